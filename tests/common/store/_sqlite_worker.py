"""Run as a separate process by test_sqlite.py: writes readings (or reads them) on a shared SQLite file."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

from citysense_common.store import EnrichedReading, SQLiteStore, StationRecord

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def main(path: str, role: str, station: str, batches: int, size: int) -> None:
    store = SQLiteStore(path, busy_timeout_ms=60_000)
    store.migrate()  # concurrent migrators must not trip over each other
    if role == "write":
        for batch in range(batches):
            readings = [
                EnrichedReading(station, T0 + timedelta(seconds=batch * size + i), 0, {"pm2_5": float(i)})
                for i in range(size)
            ]
            store.write_readings(readings)
            store.write_readings(readings[: size // 2])  # replayed half-batch: must change nothing
            store.upsert_stations([StationRecord(station, readings[-1].ts, 0, {"pm2_5": 1.0})])
        print(json.dumps({"written": batches * size}))
    else:
        seen_counts = []
        for _ in range(batches):
            total = 0
            for name in ("writer-a", "writer-b"):
                page = store.read_readings(name, T0, T0 + timedelta(days=1), limit=100_000)
                total += len(page.items)
            seen_counts.append(total)
        print(json.dumps({"seen": seen_counts}))
    store.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
