"""Write throughput of SQLiteStore.write_readings; prints JSON. Usage: python bench/store_write.py [N] [METRICS]."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from citysense_common.store import EnrichedReading, SQLiteStore


def main(n: int = 50_000, metrics: int = 10, stations: int = 50, repeats: int = 3) -> dict[str, object]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    readings = [
        EnrichedReading(f"st-{i % stations:03}", t0 + timedelta(seconds=i // stations), 0,
                        {f"m{k}": i * 0.1 + k for k in range(metrics)}, lat=48.2, lon=16.37)
        for i in range(n)
    ]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            store = SQLiteStore(Path(tmp) / f"bench{r}.db")
            store.migrate()
            start = time.perf_counter()
            store.write_readings(readings)
            runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            store.write_readings(readings)  # replay: every row already there
            replay = time.perf_counter() - start
            store.close()
    best = min(runs)
    return {"backend": "sqlite", "readings": n, "metrics_per_reading": metrics, "stations": stations,
            "seconds_best": round(best, 3), "readings_per_second_best": round(n / best),
            "readings_per_second_median": round(n / sorted(runs)[len(runs) // 2]),
            "replay_readings_per_second": round(n / replay)}


if __name__ == "__main__":
    print(json.dumps(main(*(int(a) for a in sys.argv[1:3]))))
