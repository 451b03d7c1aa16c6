"""An alert event that only Kafka has (the scorer's real-time path writes no store row) becomes readable through the
API at once: the API records each event it reads before it drops its cached alert pages, so a page built just
before cannot hide the alert."""

from __future__ import annotations

import time

import httpx

from .conftest import alert_event


def test_an_event_only_on_kafka_is_readable_and_not_hidden_by_a_cached_page(live_server) -> None:  # noqa: ANN001
    url = f"{live_server.url}/v1/alerts?state=all&station_id=st-rt"
    assert httpx.get(url).json()["items"] == []  # a page is now cached for this query
    event = alert_event(station_id="st-rt", message="from Kafka only")
    found = None
    deadline = time.monotonic() + 30
    while found is None and time.monotonic() < deadline:
        live_server.publish(event)  # the reader may still be assigning partitions
        for _ in range(10):
            items = httpx.get(url).json()["items"]
            if items:
                found = items[0]
                break
            time.sleep(0.1)
    assert found is not None, "the alert never became readable"
    assert found["id"] == event.alert_id and found["message"] == "from Kafka only"
    stored = live_server.store.get_alert(event.alert_id)
    assert stored is not None and stored.last_event_id == event.event_id
