"""``citysense-scorer batch --day YYYY-MM-DD``: daily aggregates for every station, then the year-to-date summary.

Why pandas and not Spark: the readings live behind the Store interface (SQLite, or Cassandra which Spark cannot read
here - no connector jars), so every row reaches Python through the store client anyway. One station-day is at most
86,400 readings at 1 Hz; the job reads and aggregates one station at a time with vectorised pandas, so memory stays
bounded by one station-day and there is no JVM start-up, serialisation to Spark and back, or shuffle to pay for.
Idempotent: aggregates are upserts keyed by (station, metric, day), so a re-run replaces the day's rows with the
same values (or with corrected ones if late readings arrived meanwhile).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from citysense_common.store.base import DailyAggregate, EnrichedReading, Store
from citysense_common.store.factory import open_store

from citysense_scorer.batch.aggregates import daily_aggregates, readings_frame, yearly_summary
from citysense_scorer.batch.settings import BatchSettings

log = logging.getLogger(__name__)
PAGE = 5000


def day_readings(store: Store, station_id: str, day: str) -> list[EnrichedReading]:
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    out: list[EnrichedReading] = []
    cursor = None
    while True:
        page = store.read_readings(station_id, start, start + timedelta(days=1), limit=PAGE, cursor=cursor)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def run_day(store: Store, day: str, stations: Sequence[str] | None = None) -> list[DailyAggregate]:
    """Compute and write one day's aggregates; returns what was written."""
    datetime.strptime(day, "%Y-%m-%d")  # reject anything but YYYY-MM-DD before touching the store
    ids = list(stations) if stations else [s.station_id for s in store.list_stations()]
    written: list[DailyAggregate] = []
    for station_id in ids:
        aggregates = daily_aggregates(readings_frame(day_readings(store, station_id, day)), day)
        store.write_daily_aggregates(aggregates)
        written.extend(aggregates)
    return written


def resolve_day(text: str, now: datetime | None = None) -> str:
    """``YYYY-MM-DD`` as given, or ``yesterday`` as the UTC day before ``now`` (a scheduled job's arguments are fixed,
    so the chart's daily job passes the word)."""
    if text.strip().lower() == "yesterday":
        return ((now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")


def run(settings: BatchSettings, day: str, stations: Sequence[str] | None = None) -> int:
    """Aggregate ``day`` (``YYYY-MM-DD``), then print the day's count and the year to date of the stations it
    touched as JSON."""
    store = open_store(settings)
    try:
        written = run_day(store, day, stations)
        year = int(day[:4])
        summary = {}
        for station_id in sorted({a.station_id for a in written}):
            rows = store.read_daily_aggregates(station_id, start_day=f"{year}-01-01", end_day=f"{year}-12-31")
            summary[station_id] = [s.to_dict() for s in yearly_summary(rows, year, settings.exceedance_allowances)]
    finally:
        store.close()
    log.info("day %s: %d aggregates for %d stations", day, len(written), len(summary))
    json.dump({"day": day, "aggregates": len(written), "year_to_date": summary}, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0
