"""The Store contract, run against every backend in conftest.BACKENDS (SQLite, and Cassandra on a real node)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pytest
from citysense_common.store import (
    AlertQuery,
    AlertRecord,
    DailyAggregate,
    Delivery,
    EnrichedReading,
    InvalidCursor,
    NotFound,
    Page,
    StationRecord,
    Store,
    Subscription,
)
from citysense_common.store.reading_batch import ReadingBatch

T = TypeVar("T")
# Close to now so the Cassandra store's default alert lookback window covers these alerts.
T0 = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def all_pages(fetch: Callable[[str | None], Page[T]], limit: int) -> list[T]:
    """Follow cursors to the end, checking every page respects the limit."""
    items: list[T] = []
    cursor: str | None = None
    for _ in range(1000):
        page = fetch(cursor)
        assert len(page.items) <= limit
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items
    raise AssertionError("pagination did not terminate")


def reading(station: str, seconds: float, seq: int = 0, **kw: Any) -> EnrichedReading:
    metrics = kw.pop("metrics", {"pm2_5": 10.0 + seq, "temperature": 20.5})
    return EnrichedReading(station_id=station, ts=at(seconds), seq=seq, metrics=metrics, **kw)


def alert(alert_id: str, **kw: Any) -> AlertRecord:
    base: dict[str, Any] = dict(
        alert_id=alert_id, station_id="st-1", rule_id="pm25_1m", kind="threshold", severity="critical",
        state="active", opened_at=at(0), updated_at=at(0), message="PM2.5 high", last_event_id=f"{alert_id}-e1",
        metric="pm2_5", value=300.0, threshold=250.0, window="1m", lat=48.2, lon=16.37,
    )
    base.update(kw)
    return AlertRecord(**base)


# ---------------------------------------------------------------------- lifecycle


def test_migrate_twice_and_ping(store: Store) -> None:
    store.migrate()
    store.migrate()
    store.ping()
    assert isinstance(store, Store)


# ---------------------------------------------------------------------- readings


def test_reading_round_trips_every_field_at_millisecond_precision(store: Store) -> None:
    original = EnrichedReading(
        station_id="st-1", ts=at(1.2345678), seq=7, metrics={"pm2_5": 12.25, "noise_level": 55.0},
        lat=48.2082, lon=16.3738, outliers=("noise_level",), zscores={"noise_level": 4.1, "pm2_5": 0.3},
        faults=("pm2_5",), late=True, ingested_at=at(2.5),
    )
    store.write_readings([original])
    [got] = store.read_readings("st-1", at(0), at(10)).items
    assert got == replace(original, ts=at(1.234))  # sub-millisecond part truncated by both backends
    assert got.ts.tzinfo is not None


def test_reading_batch_writes_what_write_readings_writes(store: Store) -> None:
    """The column-wise path (the scorer's) and the object path store identical rows, including missing metrics,
    no location, empty outlier/fault lists and extra (baseline) z-scores; re-writing a batch changes nothing."""
    common = dict(ingested_at=at(9.5))
    readings = [
        EnrichedReading("st-b", at(1.001), 0, {"pm2_5": 12.25, "noise_level": 55.0}, lat=48.2, lon=16.37,
                        outliers=("noise_level",), zscores={"pm2_5": 0.3, "noise_level": 4.1}, faults=("pm2_5",),
                        late=True, **common),
        EnrichedReading("st-b", at(2), 1, {"pm2_5": 13.5}, zscores={"pm2_5": -1.25, "station:pm2_5": 2.5},
                        **common),
        EnrichedReading("st-b", at(3), 2, {"noise_level": 60.0, "pm2_5": 1e-05}, lat=-33.9, lon=151.2, **common),
    ]
    batch = ReadingBatch.of(readings)
    store.write_reading_batch(batch)
    store.write_reading_batch(batch)
    got = sorted(store.read_readings("st-b", at(0), at(10)).items, key=lambda r: r.seq)
    assert got == readings
    assert [r.seq for r in batch.rows()] == [0, 1, 2] and list(batch.rows()) == readings
    # Every row with every z-score: the one-template JSON path.
    full = [EnrichedReading("st-c", at(i), i, {"pm2_5": 1.5 * i}, zscores={"pm2_5": 0.1 * i, "x": -3.0}, **common)
            for i in range(3)]
    store.write_reading_batch(ReadingBatch.of(full))
    assert sorted(store.read_readings("st-c", at(0), at(10)).items, key=lambda r: r.seq) == full


def test_reading_batch_z_column_absent_in_every_row_is_not_stored(store: Store) -> None:
    """The scorer hands over a station-baseline z column for every metric, NaN in every row until the baseline is
    learned: such a column stores nothing, and the rows keep the z-scores they do have."""
    common = dict(ingested_at=at(9.5))
    full = [EnrichedReading("st-d", at(i), i, {"pm2_5": 1.5 * i}, zscores={"pm2_5": 0.1 * i}, **common)
            for i in range(3)]
    batch = ReadingBatch.of(full)
    unlearned = np.full((3, 1), np.nan)
    store.write_reading_batch(replace(batch, z_names=(*batch.z_names, "station:pm2_5"),
                                      zscores=np.hstack((batch.zscores, unlearned))))
    assert sorted(store.read_readings("st-d", at(0), at(10)).items, key=lambda r: r.seq) == full
    bare = [replace(r, station_id="st-e", zscores={}) for r in full]
    store.write_reading_batch(replace(ReadingBatch.of(bare), z_names=("station:pm2_5",), zscores=unlearned))
    assert sorted(store.read_readings("st-e", at(0), at(10)).items, key=lambda r: r.seq) == bare


@pytest.mark.parametrize("patterns", [2, 40], ids=["few-z-patterns", "a-pattern-per-row"])
def test_reading_batch_rows_keep_their_own_z_scores(store: Store, patterns: int) -> None:
    """Rows of one batch carry different sets of z-scores (metrics a station does not measure, baselines learned
    for some stations only): each row stores exactly its finite ones, whether rows share a few sets or each has its
    own; an infinite z is left out like a NaN."""
    rng = np.random.default_rng(patterns)
    n, names = 40, ("pm2_5", "pm10", "noise_level", "station:pm2_5", "station:pm10")
    zscores = np.round(rng.normal(0, 3, (n, len(names))), 4)
    if patterns == 2:
        zscores[::2, 3:] = np.nan  # baselines not learned for every other station
    else:
        zscores[rng.random(zscores.shape) < 0.4] = np.nan
    zscores[5, 0] = np.inf
    zscores[7, :] = np.nan
    readings = [EnrichedReading(f"st-z{i % 3}", at(i), i, {"pm2_5": 10.0}, ingested_at=at(50)) for i in range(n)]
    store.write_reading_batch(replace(ReadingBatch.of(readings), z_names=names, zscores=zscores))
    got = {r.seq: r.zscores for s in range(3) for r in store.read_readings(f"st-z{s}", at(0), at(60), limit=n).items}
    want = {i: {name: float(v) for name, v in zip(names, zscores[i], strict=True) if np.isfinite(v)}
            for i in range(n)}
    assert got == want
    assert want[7] == {} and "pm2_5" not in want[5]


def test_naive_datetimes_are_utc(store: Store) -> None:
    store.write_readings([EnrichedReading("st-1", at(5).replace(tzinfo=None), 0, {"pm2_5": 1.0})])
    assert store.read_readings("st-1", at(0), at(10)).items[0].ts == at(5)


def test_write_readings_twice_equals_once(store: Store) -> None:
    batch = [reading("st-1", i, seq=i) for i in range(20)] + [reading("st-2", 3, seq=1)]
    store.write_readings(batch)
    store.write_readings(batch)
    store.write_readings(batch[5:8])
    got = all_pages(lambda c: store.read_readings("st-1", at(0), at(100), limit=6, cursor=c), 6)
    assert sorted((r.ts, r.seq) for r in got) == sorted((r.ts, r.seq) for r in batch if r.station_id == "st-1")
    store.write_readings([])


def test_readings_newest_first_seq_ascending_half_open_range(store: Store) -> None:
    store.write_readings([reading("st-1", 10, seq=2), reading("st-1", 10, seq=1), reading("st-1", 5, seq=9),
                          reading("st-1", 20, seq=0), reading("st-1", 30, seq=0), reading("st-9", 15, seq=0)])
    got = store.read_readings("st-1", at(5), at(30)).items  # 5 included, 30 excluded
    assert [(r.ts, r.seq) for r in got] == [(at(20), 0), (at(10), 1), (at(10), 2), (at(5), 9)]
    assert store.read_readings("st-1", at(31), at(40)).items == []
    assert store.read_readings("nobody", at(0), at(40)) == Page([], None)


def test_readings_paginate_across_days(store: Store) -> None:
    # 3 readings per hour over 3 days: crosses Cassandra's (station_id, day) partitions.
    batch = [reading("st-1", hour * 3600 + k, seq=k) for hour in range(0, 72, 2) for k in range(3)]
    store.write_readings(batch)
    expected = sorted(batch, key=lambda r: (-r.ts.timestamp(), r.seq))
    for limit in (1, 7, 108, 500):
        got = all_pages(lambda c, n=limit: store.read_readings("st-1", at(0), at(72 * 3600), limit=n, cursor=c),
                        limit)
        assert got == expected, limit
    first = store.read_readings("st-1", at(0), at(72 * 3600), limit=10)
    assert len(first.items) == 10 and first.next_cursor is not None


def test_readings_filter_by_metric(store: Store) -> None:
    store.write_readings([
        reading("st-1", 1, metrics={"pm2_5": 1.0}), reading("st-1", 2, metrics={"noise_level": 40.0}),
        reading("st-1", 3, metrics={"pm2_5": 3.0, "noise_level": 41.0}), reading("st-1", 4, metrics={"pm10": 9.0}),
    ])
    got = all_pages(lambda c: store.read_readings("st-1", at(0), at(10), metric="pm2_5", limit=1, cursor=c), 1)
    assert [r.ts for r in got] == [at(3), at(1)]
    assert got[0].metrics == {"pm2_5": 3.0, "noise_level": 41.0}  # filtered, not narrowed
    assert store.read_readings("st-1", at(0), at(10), metric="pm").items == []  # exact names, no prefixes


def test_reading_cursor_is_checked(store: Store) -> None:
    store.write_readings([reading("st-1", i, seq=i) for i in range(5)])
    page = store.read_readings("st-1", at(0), at(10), limit=2)
    assert page.next_cursor
    with pytest.raises(InvalidCursor):
        store.read_readings("st-1", at(0), at(10), limit=2, cursor="not a cursor!")
    with pytest.raises(InvalidCursor):
        store.read_readings("st-2", at(0), at(10), limit=2, cursor=page.next_cursor)
    with pytest.raises(ValueError):  # InvalidCursor is a ValueError for callers mapping errors to 400
        store.read_readings("st-1", at(0), at(9), limit=2, cursor=page.next_cursor)


# ---------------------------------------------------------------------- stations


def station(station_id: str, seconds: float, seq: int = 0, **kw: Any) -> StationRecord:
    base: dict[str, Any] = dict(station_id=station_id, last_seen=at(seconds), last_seq=seq,
                                latest={"pm2_5": float(seconds)}, lat=48.0, lon=16.0)
    base.update(kw)
    return StationRecord(**base)


def test_stations_keep_newest_last_seen(store: Store) -> None:
    newer = station("st-1", 100, seq=5, latest={"pm2_5": 100.0, "pm10": 3.0}, lat=48.5)
    store.upsert_stations([newer])
    store.upsert_stations([station("st-1", 50, seq=9, latest={"pm2_5": 50.0}, lat=1.0)])  # older: ignored
    store.upsert_stations([newer, newer])
    assert store.get_station("st-1") == newer
    newest = station("st-1", 200, seq=1)
    store.upsert_stations([newest, station("st-2", 10)])
    assert store.get_station("st-1") == newest
    assert [s.station_id for s in store.list_stations()] == ["st-1", "st-2"]
    assert store.get_station("missing") is None


def test_station_status(store: Store) -> None:
    store.upsert_stations([station("st-1", 100)])
    store.set_station_status("st-1", "offline", at(400))
    store.set_station_status("st-1", "active", at(300))  # older than the stored status: ignored
    got = store.get_station("st-1")
    assert got is not None and (got.status, got.status_changed_at) == ("offline", at(400))
    # A newer reading carries its own status, newer than the offline mark: it wins.
    store.upsert_stations([station("st-1", 500, status="active", status_changed_at=at(500))])
    got = store.get_station("st-1")
    assert got is not None and (got.status, got.status_changed_at, got.last_seen) == ("active", at(500), at(500))
    with pytest.raises(NotFound):
        store.set_station_status("unknown", "offline", at(1))


# ---------------------------------------------------------------------- alerts


def test_alert_newer_event_wins_and_replay_is_idempotent(store: Store) -> None:
    opened = alert("a1")
    updated = replace(opened, severity="warning", value=120.0, updated_at=at(60), last_event_id="a1-e2")
    resolved = replace(updated, state="resolved", resolved_at=at(120), updated_at=at(120), last_event_id="a1-e3")
    store.upsert_alerts([opened, updated])
    assert store.get_alert("a1") == updated
    store.upsert_alerts([resolved])
    store.upsert_alerts([opened, updated])  # replayed older events never overwrite the resolution
    assert store.get_alert("a1") == resolved
    assert store.get_alert("missing") is None


def test_alert_resolution_wins_a_tie(store: Store) -> None:
    update = alert("a1", updated_at=at(60), last_event_id="a1-e2")
    resolution = replace(update, state="resolved", resolved_at=at(60), last_event_id="a1-e3")
    store.upsert_alerts([resolution])
    store.upsert_alerts([update])
    assert store.get_alert("a1") == resolution


def _alert_fixture(store: Store) -> list[AlertRecord]:
    alerts = [
        alert("a-vienna", opened_at=at(100), updated_at=at(100)),
        alert("a-berlin", station_id="st-2", opened_at=at(86400 + 50), updated_at=at(86400 + 50), lat=52.5,
              lon=13.4, severity="warning", kind="outlier"),
        alert("a-resolved", opened_at=at(200), updated_at=at(300), state="resolved", resolved_at=at(300)),
        alert("a-fiji", station_id="st-3", opened_at=at(2 * 86400), updated_at=at(2 * 86400), lat=-17.7, lon=179.9),
        alert("a-samoa", station_id="st-4", opened_at=at(2 * 86400), updated_at=at(2 * 86400), lat=-13.8,
              lon=-171.7, severity="info"),
    ]
    store.upsert_alerts(alerts)
    return alerts


def _ids(store: Store, **kw: Any) -> list[str]:
    limit = kw.pop("limit", 100)
    return [a.alert_id for a in all_pages(lambda c: store.list_alerts(AlertQuery(limit=limit, cursor=c, **kw)),
                                          limit)]


def test_list_alerts_filters_and_order(store: Store) -> None:
    _alert_fixture(store)
    # Newest opened_at first; equal opened_at ordered by alert_id.
    assert _ids(store) == ["a-fiji", "a-samoa", "a-berlin", "a-vienna"]
    assert _ids(store, state="resolved") == ["a-resolved"]
    assert _ids(store, state="all") == ["a-fiji", "a-samoa", "a-berlin", "a-resolved", "a-vienna"]
    assert _ids(store, severity="warning") == ["a-berlin"]
    assert _ids(store, kind="outlier") == ["a-berlin"]
    assert _ids(store, station_id="st-1", state="all") == ["a-resolved", "a-vienna"]
    assert _ids(store, since=at(150), state="all") == ["a-fiji", "a-samoa", "a-berlin", "a-resolved"]
    assert _ids(store, severity="critical", station_id="st-3") == ["a-fiji"]
    assert _ids(store, severity="nope") == []


def test_list_alerts_bbox(store: Store) -> None:
    _alert_fixture(store)
    assert _ids(store, bbox=(16.0, 48.0, 17.0, 49.0)) == ["a-vienna"]
    assert _ids(store, bbox=(10.0, 45.0, 17.0, 53.0)) == ["a-berlin", "a-vienna"]
    assert _ids(store, bbox=(16.37, 48.2, 16.37, 48.2)) == ["a-vienna"]  # edges are inside
    # Crossing the antimeridian: min_lon > max_lon.
    assert _ids(store, bbox=(179.0, -20.0, -170.0, -10.0)) == ["a-fiji", "a-samoa"]
    assert _ids(store, bbox=(0.0, 0.0, 1.0, 1.0)) == []


def test_list_alerts_pagination(store: Store) -> None:
    alerts = [alert(f"a{i:02}", opened_at=at(i * 7200), updated_at=at(i * 7200)) for i in range(30)]
    store.upsert_alerts(alerts)
    expected = [a.alert_id for a in sorted(alerts, key=lambda a: a.opened_at, reverse=True)]
    for limit in (1, 4, 30, 31):
        assert _ids(store, limit=limit) == expected
        assert _ids(store, limit=limit, station_id="st-1") == expected
    first = store.list_alerts(AlertQuery(limit=4))
    assert [a.alert_id for a in first.items] == expected[:4] and first.next_cursor
    with pytest.raises(InvalidCursor):
        store.list_alerts(AlertQuery(limit=4, severity="info", cursor=first.next_cursor))


# ---------------------------------------------------------------------- subscriptions


def subscription(sub_id: str, **kw: Any) -> Subscription:
    base: dict[str, Any] = dict(id=sub_id, url=f"https://example.org/{sub_id}", secret="whsec_abc",  # noqa: S106
                                description="test", filters={"severity": ["critical"], "bbox": [1, 2, 3, 4]},
                                created_at=at(10), updated_at=at(10))
    base.update(kw)
    return Subscription(**base)


def test_subscription_lifecycle(store: Store) -> None:
    s1, s2 = subscription("s1"), subscription("s2", status="paused", created_at=at(20), updated_at=at(20))
    store.create_subscription(s1)
    store.create_subscription(s2)
    store.create_subscription(replace(s1, url="https://evil.example"))  # same id again: no change
    assert store.get_subscription("s1") == s1
    assert store.list_subscriptions() == [s1, s2]
    assert store.list_subscriptions("paused") == [s2]
    assert store.list_subscriptions("active") == [s1]

    changed = replace(s1, url="https://example.org/new", status="paused", filters={}, updated_at=at(99),
                      created_at=at(50))
    store.update_subscription(changed)
    assert store.get_subscription("s1") == replace(changed, created_at=at(10))  # created_at never changes
    with pytest.raises(NotFound):
        store.update_subscription(subscription("missing"))
    assert store.get_subscription("missing") is None

    assert store.delete_subscription("s1") is True
    assert store.delete_subscription("s1") is False
    assert store.get_subscription("s1") is None
    assert store.list_subscriptions() == [s2]


def test_subscription_timestamps_filled_in(store: Store) -> None:
    store.create_subscription(subscription("s1", created_at=None, updated_at=None))
    got = store.get_subscription("s1")
    assert got is not None and got.created_at is not None and got.updated_at == got.created_at
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=5)


# ---------------------------------------------------------------------- deliveries


def delivery(sub: str, event: str, seconds: float, **kw: Any) -> Delivery:
    base: dict[str, Any] = dict(subscription_id=sub, event_id=event, webhook_id=f"msg_{event}", status="pending",
                                attempts=0, created_at=at(seconds), updated_at=at(seconds), event_type="alert.open")
    base.update(kw)
    return Delivery(**base)


def test_delivery_upsert_and_older_update_ignored(store: Store) -> None:
    pending = delivery("s1", "e1", 10)
    retrying = replace(pending, status="retrying", attempts=1, updated_at=at(20), last_status_code=503,
                       last_error="Service Unavailable", next_attempt_at=at(50))
    delivered = replace(retrying, status="delivered", attempts=2, updated_at=at(60), last_status_code=200,
                        last_error=None, next_attempt_at=None)
    store.record_delivery(pending)
    store.record_delivery(retrying)
    assert store.get_delivery("s1", "e1") == retrying
    store.record_delivery(delivered)
    store.record_delivery(delivered)
    store.record_delivery(retrying)  # a slow, older write cannot undo "delivered"
    assert store.get_delivery("s1", "e1") == delivered
    assert store.get_delivery("s1", "e2") is None
    assert store.get_delivery("s2", "e1") is None


def test_list_deliveries_newest_first_paginated(store: Store) -> None:
    records = [delivery("s1", f"e{i:02}", i * 10) for i in range(12)] + [delivery("s1", "e99", 50)]
    records.append(delivery("s2", "other", 5))
    for record in records:
        store.record_delivery(record)
    expected = sorted((r for r in records if r.subscription_id == "s1"),
                      key=lambda r: (-r.created_at.timestamp(), r.event_id))
    assert expected[6].event_id == "e05" and expected[7].event_id == "e99"  # the tie at created_at=50
    for limit in (1, 5, 13, 20):
        got = all_pages(lambda c, n=limit: store.list_deliveries("s1", limit=n, cursor=c), limit)
        assert got == expected
    assert store.list_deliveries("nobody") == Page([], None)
    # Re-recording an existing delivery with a newer state does not duplicate it or move it.
    store.record_delivery(replace(records[0], status="delivered", attempts=1, updated_at=at(500)))
    got = all_pages(lambda c: store.list_deliveries("s1", limit=4, cursor=c), 4)
    assert [d.event_id for d in got] == [d.event_id for d in expected]


# ---------------------------------------------------------------------- daily aggregates


def test_daily_aggregates(store: Store) -> None:
    aggregates = [
        DailyAggregate("st-1", "pm2_5", "2024-01-01", 12.5, 40.0, 86400, 24, True),
        DailyAggregate("st-1", "pm2_5", "2024-01-02", 13.5, 41.0, 40000, 11, False),
        DailyAggregate("st-1", "pm10", "2024-01-01", 20.0, 60.0, 86000, 24, True),
        DailyAggregate("st-2", "pm2_5", "2024-01-01", 1.0, 2.0, 10, 1, False),
    ]
    store.write_daily_aggregates(aggregates)
    store.write_daily_aggregates(aggregates)
    assert store.read_daily_aggregates("st-1") == [aggregates[2], aggregates[0], aggregates[1]]
    assert store.read_daily_aggregates("st-1", metric="pm2_5") == aggregates[:2]
    assert store.read_daily_aggregates("st-1", start_day="2024-01-02") == [aggregates[1]]
    assert store.read_daily_aggregates("st-1", metric="pm2_5", end_day="2024-01-01") == [aggregates[0]]
    recomputed = replace(aggregates[1], mean=14.0, count=86400, hours=24, complete=True)
    store.write_daily_aggregates([recomputed])  # a recomputed day replaces the earlier result
    assert store.read_daily_aggregates("st-1", metric="pm2_5", start_day="2024-01-02") == [recomputed]
    assert store.read_daily_aggregates("nobody") == []
