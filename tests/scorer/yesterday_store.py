"""A SQLite store holding one station's readings from yesterday (UTC): what the daily batch job aggregates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from citysense_common.store.base import EnrichedReading, StationRecord
from citysense_common.store.sqlite import SQLiteStore


def yesterday_store(path: Path, station: str, hours: int, base: float) -> tuple[SQLiteStore, datetime]:
    """(store, yesterday 00:00 UTC) with one pm10 reading per hour for ``hours`` hours: base, base + 1, ..."""
    yesterday = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    store = SQLiteStore(path)
    store.migrate()
    store.upsert_stations([StationRecord(station, yesterday, 0, {"pm10": base})])
    store.write_readings([EnrichedReading(station, yesterday + timedelta(hours=h), h, {"pm10": base + h})
                          for h in range(hours)])
    return store, yesterday
