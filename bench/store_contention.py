"""How long a one-row write waits for SQLite's lock while the scorer writes readings batches (P2/P3's store step).

The alert API records every alert event and the notifier logs every delivery in the same SQLite file the scorer
writes its micro-batches to, and SQLite has one write lock per file. A writer process commits a batch of
``--batch`` readings every ``--interval`` seconds (5,000 readings/s by default, as in P2/P3); this process upserts one
alert every 20 ms and times each upsert. A/B in the same run:

- A: SQLite's own busy handler (it sleeps in growing steps, up to 100 ms) and a batch in one transaction;
- B: the store as it is: the lock polled every millisecond, readings committed in chunks.

    python bench/store_contention.py [--batch 2500] [--interval 0.5] [--samples 400]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citysense_common.store import AlertRecord, EnrichedReading, SQLiteStore  # noqa: E402
from citysense_common.store import sqlite as sqlite_store  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402
from pipeline import percentile  # noqa: E402

AS_IS = (sqlite_store.SQLiteStore._begin_immediate, sqlite_store.WRITE_CHUNK_ROWS)


def busy_handler_only() -> None:
    """Variant A in this process: one plain BEGIN IMMEDIATE under SQLite's busy handler, one transaction a batch."""

    def begin(self: SQLiteStore, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    sqlite_store.SQLiteStore._begin_immediate = begin  # type: ignore[method-assign]
    sqlite_store.WRITE_CHUNK_ROWS = 1 << 30


def batch_writer(path: str, batch: int, interval: float, legacy: bool, stop: mp.Event) -> None:
    if legacy:
        busy_handler_only()
    store = SQLiteStore(path)
    t0, n = datetime(2026, 1, 1, tzinfo=UTC), 0
    metrics = {"pm2_5": 12.0, "pm10": 20.0, "temperature": 21.5, "humidity": 55.0}
    while not stop.is_set():
        started = time.monotonic()
        store.write_readings([EnrichedReading(f"st-{i % 5000:05}", t0 + timedelta(seconds=n + i // 5000), 0, metrics,
                                              lat=52.5, lon=13.4) for i in range(batch)])
        n += batch // 5000 + 1
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    store.close()


def measure(batch: int, interval: float, samples: int, legacy: bool) -> dict:
    if legacy:
        busy_handler_only()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "store.db")
        store = SQLiteStore(path)
        store.migrate()
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        writer = ctx.Process(target=batch_writer, args=(path, batch, interval, legacy, stop))
        writer.start()
        time.sleep(2 * interval + 1)  # the writer's first batches
        waits = []
        now = datetime.now(UTC)
        for i in range(samples):
            record = AlertRecord(alert_id=f"a-{i}", station_id="st-00001", rule_id="pm25-acute-1m", kind="threshold",
                                 severity="warning", state="active", opened_at=now, updated_at=now, message="probe",
                                 last_event_id=f"e-{i}", metric="pm2_5", value=80.0, threshold=55.0)
            started = time.perf_counter()
            store.upsert_alerts([record])
            waits.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)
        stop.set()
        writer.join(30)
        store.close()
    if legacy:  # back to the store as it is for the next variant (spawned writers start clean anyway)
        sqlite_store.SQLiteStore._begin_immediate, sqlite_store.WRITE_CHUNK_ROWS = AS_IS  # type: ignore[method-assign]
    return {"p50_ms": percentile(waits, 50), "p99_ms": percentile(waits, 99), "max_ms": max(waits),
            "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2500, help="readings per batch")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between batches")
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()
    figures = []
    for legacy in (True, False):
        label = "[A: SQLite busy handler, one transaction a batch] " if legacy else ""
        progress(f"store contention {label or '[B: polled lock, chunked batches]'}: {args.samples} alert upserts")
        result = measure(args.batch, args.interval, args.samples, legacy)
        progress(f"  p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
        figures.append(Figure("P2-store", f"{label}one alert upsert beside {args.batch / args.interval:,.0f} "
                              "readings/s of batch writes, p99", result["p99_ms"], "ms", "—", None, result))
    write_result("store_contention", figures, notes=(
        f"SQLite store; a second process writes {args.batch} readings every {args.interval} s; this one upserts one "
        "alert every 20 ms. A emulates SQLite's busy handler and single-transaction batches; B is the store as it is."))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
