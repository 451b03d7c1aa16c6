"""SQLite retention: readings expire like Cassandra's table TTL (CITYSENSE_READINGS_TTL_DAYS, counted from when a
reading was written), resolved alerts and settled deliveries after their own opt-in retention; the writer of
readings (the scorer, in the local stack) applies it from its write path at most every interval."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.store import (
    AlertQuery,
    AlertRecord,
    Delivery,
    EnrichedReading,
    SQLiteStore,
    StoreSettings,
    open_store,
)
from citysense_common.store.sqlite import Retention

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


def reading(station: str, seq: int, ingested: datetime | None, ts: datetime | None = None) -> EnrichedReading:
    return EnrichedReading(station, ts or (ingested or NOW) - timedelta(seconds=5), seq, {"pm2_5": float(seq)},
                           ingested_at=ingested)


def stored(store: SQLiteStore) -> set[tuple[str, int]]:
    rows = store._query("SELECT station_id, seq FROM readings")
    return {(station, seq) for station, seq in rows}


def open_with(tmp_path: Path, clock: Clock, **retention: object) -> SQLiteStore:
    store = SQLiteStore(tmp_path / "store.db", retention=Retention(**retention), clock=clock)  # type: ignore[arg-type]
    store.migrate()
    return store


def test_readings_expire_by_write_time_like_the_cassandra_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = open_with(tmp_path, clock, readings_days=30)
    store.write_readings([
        reading("old", 0, NOW - 31 * DAY),
        reading("recent", 1, NOW - 29 * DAY),
        # Replayed history: event time 2019, written yesterday. Cassandra's TTL counts from the write: kept.
        reading("history", 2, NOW - DAY, ts=datetime(2019, 1, 1, tzinfo=UTC)),
        # Written without a write time (not by the scorer): its age is unknown, so it is never expired.
        reading("unknown", 3, None, ts=datetime(2019, 1, 1, tzinfo=UTC)),
    ])
    assert stored(store) == {("recent", 1), ("history", 2), ("unknown", 3)}
    store.close()


def test_retention_runs_at_most_every_interval(tmp_path: Path) -> None:
    clock = Clock()
    store = open_with(tmp_path, clock, readings_days=30, interval_s=600)
    store.write_readings([reading("a", 0, NOW - 29 * DAY - timedelta(hours=23, minutes=55))])
    clock.now += 300  # the row is 30 days and 5 s old now, but the last run was 5 minutes ago
    store.write_readings([reading("b", 1, NOW)])
    assert stored(store) == {("a", 0), ("b", 1)}
    clock.now += 301
    store.write_readings([reading("c", 2, NOW)])
    assert stored(store) == {("b", 1), ("c", 2)}
    store.close()


def test_zero_days_keeps_readings_forever(tmp_path: Path) -> None:
    store = open_with(tmp_path, Clock(), readings_days=0)
    store.write_readings([reading("ancient", 0, NOW - 3650 * DAY)])
    assert store.expire() == {"readings": 0, "alerts": 0, "deliveries": 0}
    assert stored(store) == {("ancient", 0)}
    store.close()


def test_a_backlog_is_deleted_in_chunks_within_a_time_budget(tmp_path: Path) -> None:
    clock = Clock()
    clock.now -= 20 * 86400  # the rows are 20 days old when written
    store = open_with(tmp_path, clock, readings_days=30, chunk_rows=500)
    store.write_readings([reading(f"s{i % 7}", i, NOW - 40 * DAY) for i in range(3000)])
    store.write_readings([reading("fresh", 0, NOW)])
    assert len(stored(store)) == 3001
    clock.now = NOW.timestamp()  # and 40 days old now
    started = time.perf_counter()
    store.write_readings([reading("fresh", 1, NOW)])
    assert stored(store) == {("fresh", 0), ("fresh", 1)}
    assert time.perf_counter() - started < 5
    store.close()


def test_a_run_that_exceeds_its_budget_continues_at_the_next_write(tmp_path: Path) -> None:
    clock = Clock()
    clock.now -= 20 * 86400
    store = open_with(tmp_path, clock, readings_days=30, chunk_rows=100, budget_s=0.0)
    store.write_readings([reading("s", i, NOW - 40 * DAY) for i in range(250)])
    clock.now = NOW.timestamp()
    remaining = [len(stored(store))]
    for seq in range(3):  # one chunk per write: no write waits for the whole backlog
        store.write_readings([reading("fresh", seq, NOW)])
        remaining.append(len(stored(store)) - seq - 1)
    assert remaining == [250, 150, 50, 0]
    store.close()


def test_rows_written_after_the_table_was_emptied_expire_too(tmp_path: Path) -> None:
    clock = Clock()
    store = open_with(tmp_path, clock, readings_days=30)
    store.write_readings([reading("s", i, NOW - 40 * DAY) for i in range(50)])
    assert stored(store) == set()  # all expired: the table is empty and its rowids start again from 1
    store.write_readings([reading("t", 0, NOW - 29 * DAY)])
    clock.now += 2 * 86400
    store.write_readings([reading("u", 0, NOW + 2 * DAY)])
    assert stored(store) == {("u", 0)}
    store.close()


def alert(alert_id: str, state: str, updated: datetime) -> AlertRecord:
    return AlertRecord(alert_id, "st", "pm25-acute-1m", "threshold", "warning", state, updated - DAY, updated,
                       "PM2.5 high", f"ev-{alert_id}", resolved_at=updated if state == "resolved" else None)


def delivery(event_id: str, status: str, updated: datetime) -> Delivery:
    return Delivery("sub-1", event_id, f"msg_{event_id}", status, 1, updated - timedelta(minutes=1), updated)


def test_resolved_alerts_and_settled_deliveries_expire_when_asked_to(tmp_path: Path) -> None:
    clock = Clock()
    store = open_with(tmp_path, clock, alerts_days=90, deliveries_days=30)
    store.upsert_alerts([alert("old-resolved", "resolved", NOW - 91 * DAY), alert("old-active", "active",
                         NOW - 400 * DAY), alert("new-resolved", "resolved", NOW - 89 * DAY)])
    for event_id, status, age in (("d-old", "delivered", 31), ("dead-old", "dead", 31), ("d-new", "delivered", 29),
                                  ("pending-old", "pending", 31), ("retrying-old", "retrying", 31)):
        store.record_delivery(delivery(event_id, status, NOW - age * DAY))
    assert store.expire() == {"readings": 0, "alerts": 1, "deliveries": 2}
    remaining = {a.alert_id for a in store.list_alerts(AlertQuery(state="all")).items}
    assert remaining == {"old-active", "new-resolved"}  # an active alert is never expired
    assert {d.event_id for d in store.list_deliveries("sub-1").items} == {"d-new", "pending-old", "retrying-old"}
    store.close()


def test_alerts_and_deliveries_are_kept_by_default_as_in_cassandra(tmp_path: Path) -> None:
    defaults = StoreSettings()
    assert (defaults.readings_ttl_days, defaults.alerts_retention_days, defaults.deliveries_retention_days) == (
        30, 0, 0)
    store = open_with(tmp_path, Clock(), readings_days=30)
    store.upsert_alerts([alert("old-resolved", "resolved", NOW - 3650 * DAY)])
    store.record_delivery(delivery("d-old", "delivered", NOW - 3650 * DAY))
    assert store.expire() == {"readings": 0, "alerts": 0, "deliveries": 0}
    store.close()


def test_open_store_takes_retention_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CITYSENSE_STORE", "sqlite")
    monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(tmp_path / "env.db"))
    monkeypatch.setenv("CITYSENSE_READINGS_TTL_DAYS", "7")
    monkeypatch.setenv("CITYSENSE_ALERTS_RETENTION_DAYS", "180")
    monkeypatch.setenv("CITYSENSE_DELIVERIES_RETENTION_DAYS", "14")
    monkeypatch.setenv("CITYSENSE_SQLITE_RETENTION_INTERVAL_S", "60")
    monkeypatch.setenv("CITYSENSE_SQLITE_MIN_FREE_BYTES", "1048576")
    store = open_store()
    try:
        assert isinstance(store, SQLiteStore)
        assert store.retention == Retention(readings_days=7, alerts_days=180, deliveries_days=14, interval_s=60)
        assert store.min_free_bytes == 1048576
    finally:
        store.close()
