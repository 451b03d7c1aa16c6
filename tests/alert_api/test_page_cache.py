"""The alert-page cache: unit behaviour, and end to end that an alert event reaching the API drops cached pages."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from citysense_alert_api.page_cache import PageCache
from citysense_common.store import AlertRecord

from .conftest import alert_event, running_api


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_page_is_served_until_max_age_after_the_read() -> None:
    clock = FakeClock()
    cache = PageCache(max_age_s=1.0, clock=clock)
    ticket = cache.begin()
    clock.now += 0.4  # the store read and serialisation took 0.4 s
    cache.put("k", ticket, b"page")
    clock.now += 0.6
    assert cache.get("k") == b"page"
    clock.now += 0.01  # 1.01 s after the read, not after the put
    assert cache.get("k") is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_invalidate_drops_pages_and_refuses_a_read_that_started_before_it() -> None:
    cache = PageCache(max_age_s=10)
    cache.put("old", cache.begin(), b"old")
    before = cache.begin()
    cache.invalidate()  # an alert changed while a request was reading the store
    assert cache.get("old") is None
    cache.put("k", before, b"maybe stale")
    assert cache.get("k") is None
    cache.put("k", cache.begin(), b"fresh")
    assert cache.get("k") == b"fresh"


def test_least_recently_used_page_goes_first_when_full() -> None:
    cache = PageCache(max_age_s=10, max_entries=2)
    for key in ("a", "b"):
        cache.put(key, cache.begin(), key.encode())
    assert cache.get("a") == b"a"  # "b" is now the least recently used
    cache.put("c", cache.begin(), b"c")
    assert [cache.get(k) for k in ("a", "b", "c")] == [b"a", None, b"c"]
    assert len(cache) == 2


def test_zero_max_age_turns_caching_off() -> None:
    cache = PageCache(max_age_s=0)
    cache.put("k", cache.begin(), b"page")
    assert cache.get("k") is None and len(cache) == 0
    with pytest.raises(ValueError, match="max_entries"):
        PageCache(max_age_s=1, max_entries=0)


def _ids(url: str) -> set[str]:
    r = httpx.get(f"{url}/v1/alerts", params={"state": "active"}, timeout=5)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    return {item["id"] for item in r.json()["items"]}


def test_alert_event_drops_the_cached_page(api_settings, store) -> None:  # noqa: ANN001
    """A max age of a minute, so only the event can explain the new alert showing within seconds."""
    settings = api_settings.model_copy(update={"api_alert_cache_s": 60.0})
    with running_api(settings, store) as server:
        first = _ids(server.url)
        assert first == {"al-0", "al-2", "al-3"}
        event = alert_event()
        now = datetime.now(UTC)
        # What the scorer does: the store first, then the event.
        store.upsert_alerts([AlertRecord(alert_id=event.alert_id, station_id=event.station_id, rule_id="pm25_1m",
                                         kind="threshold", severity="critical", state="active", opened_at=now,
                                         updated_at=now, message="new", last_event_id=event.event_id)])
        assert _ids(server.url) == first  # cached: the store changed but no event told the API yet
        server.publish(event)
        deadline = time.monotonic() + 20
        while event.alert_id not in _ids(server.url):
            assert time.monotonic() < deadline, "the alert event did not drop the cached page"
            time.sleep(0.1)
        assert _ids(server.url) == first | {event.alert_id}


def test_without_cache_every_request_reads_the_store(api_settings, store) -> None:  # noqa: ANN001
    settings = api_settings.model_copy(update={"api_alert_cache_s": 0.0})
    with running_api(settings, store) as server:
        assert "al-new" not in _ids(server.url)
        now = datetime.now(UTC)
        store.upsert_alerts([AlertRecord(alert_id="al-new", station_id="st-good", rule_id="r", kind="threshold",
                                         severity="info", state="active", opened_at=now, updated_at=now,
                                         message="m", last_event_id="ev-new")])
        assert "al-new" in _ids(server.url)
