"""Quick latency check of the alert API's hot reads (P5 shape) from a separate load process.

Seeds a temp SQLite store with stations and active alerts, serves ``citysense-alert-api`` on a free port, and
sends GET /v1/stations/{id} and GET /v1/alerts?state=active open-loop at --rate req/s for --seconds.
Usage: python bench/api_latency.py [--rate 500] [--seconds 10]. Issue 7's harness runs the full P5 at 2,000 req/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from citysense_common.settings import load_settings
from citysense_common.store import AlertRecord, StationRecord
from citysense_common.store.factory import open_store
from citysense_common.store.settings import StoreSettings


async def load(base: str, rate: float, seconds: float) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"station": [], "alerts": []}
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=5) as client:
        async def one(i: int) -> None:
            nonlocal errors
            kind = "station" if i % 2 == 0 else "alerts"
            path = f"/v1/stations/st-{i % 100}" if kind == "station" else "/v1/alerts?state=active"
            start = time.perf_counter()
            r = await client.get(path)
            if r.status_code != 200:
                errors += 1
            results[kind].append((time.perf_counter() - start) * 1000)

        tasks = []
        t0 = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    results["errors"] = [errors]
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(load_settings(StoreSettings, data_dir=Path(tmp)))
        now = datetime.now(UTC)
        store.upsert_stations([StationRecord(f"st-{i}", now, 1, {"pm2_5": float(i), "temperature": 20.0},
                                             lat=48.8 + i / 1000, lon=2.3) for i in range(100)])
        store.upsert_alerts([AlertRecord(f"al-{i}", f"st-{i}", "r", "threshold", "warning", "active", now, now,
                                         "m", f"e-{i}") for i in range(20)])
        store.close()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {**os.environ, "CITYSENSE_DATA_DIR": tmp, "CITYSENSE_API_PORT": str(port),
               "CITYSENSE_API_TOKEN": "bench-token-0123456789", "CITYSENSE_LOG_LEVEL": "WARNING",
               "CITYSENSE_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
        proc = subprocess.Popen([sys.executable, "-m", "citysense_alert_api.cli"], env=env,
                                stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    httpx.get(base + "/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            results = asyncio.run(load(base, args.rate, args.seconds))
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"rate_per_s": args.rate, "seconds": args.seconds, "errors": results["errors"][0]}
    for kind in ("station", "alerts"):
        values = sorted(results[kind])
        out[kind] = {"n": len(values), "p50_ms": round(statistics.median(values), 2),
                     "p99_ms": round(values[int(0.99 * (len(values) - 1))], 2)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
