"""P5: alert API latency for GET /v1/stations/{id} and GET /v1/alerts?state=active at 2,000 requests/s.

The API runs as in production (`citysense-alert-api`, one uvicorn worker per core) over a SQLite store seeded with
--stations stations and --alerts active alerts, next to a real broker. The load comes from wrk (Debian package),
two processes at half the rate each, one per endpoint. wrk is closed-loop: each connection waits a think time
(Lua `delay`) between requests so the pair offers about --rate requests/s; the achieved rate is reported beside
the percentiles so a server that cannot keep up shows as a lower rate, not as hidden queueing.

    python bench/p5_api.py [--rate 2000] [--seconds 20] [--stations 1000] [--alerts 200]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, progress, write_result  # noqa: E402

LUA = r"""
local delay_ms = tonumber(os.getenv("P5_DELAY_MS"))
local stations = tonumber(os.getenv("P5_STATIONS"))
local path = os.getenv("P5_PATH")
request = function()
  local p = path
  if string.find(path, "%", 1, true) then p = string.format(path, math.random(0, stations - 1)) end
  return wrk.format("GET", p)
end
delay = function() return delay_ms end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
CONNECTIONS = 16  # per wrk process


def seed(data_dir: Path, stations: int, alerts: int) -> None:
    from citysense_common.settings import load_settings
    from citysense_common.store import AlertRecord, StationRecord
    from citysense_common.store.factory import open_store
    from citysense_common.store.settings import StoreSettings

    store = open_store(load_settings(StoreSettings, data_dir=data_dir))
    now = datetime.now(UTC)
    store.upsert_stations([
        StationRecord(f"st-0-{i:05d}", now, i, {"pm2_5": 5.0 + i % 40, "temperature": 11.0, "noise_level": 58.0},
                      lat=52.4 + (i % 100) / 400, lon=13.2 + (i // 100) / 400)
        for i in range(stations)])
    store.upsert_alerts([
        AlertRecord(alert_id=f"al-{i}", station_id=f"st-0-{i:05d}", rule_id="pm25_1m_hazardous", kind="threshold",
                    severity="critical", state="active", opened_at=now - timedelta(minutes=i), updated_at=now,
                    message="PM2.5 1-minute mean 260 µg/m³", last_event_id=f"ev-{i}", metric="pm2_5", value=260.0,
                    threshold=250.0, window="1m", lat=52.5, lon=13.4)
        for i in range(alerts)])
    store.close()


def wrk(url: str, path: str, rate: float, seconds: float, stations: int, script: Path) -> subprocess.Popen:
    env = {**os.environ, "P5_PATH": path, "P5_STATIONS": str(stations),
           "P5_DELAY_MS": str(max(0, round(CONNECTIONS * 1000 / rate)))}
    return subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "-s", str(script), url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result_of(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"wrk printed no result:\n{out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="API worker processes")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("P5 needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    from citysense_localstack.broker import free_port, running_broker

    with tempfile.TemporaryDirectory() as tmp, running_broker() as broker:
        data = Path(tmp)
        progress(f"P5 seeding {args.stations} stations and {args.alerts} active alerts")
        seed(data, args.stations, args.alerts)
        port = free_port()
        env = {**os.environ, "CITYSENSE_DATA_DIR": str(data), "CITYSENSE_KAFKA_BOOTSTRAP": broker.bootstrap,
               "CITYSENSE_API_PORT": str(port), "CITYSENSE_API_TOKEN": "bench-token-0123456789abcdef",
               "CITYSENSE_LOG_LEVEL": "WARNING", "CITYSENSE_API_WORKERS": str(args.workers)}
        api = subprocess.Popen([str(Path(sys.executable).parent / "citysense-alert-api")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310 - loopback
                    break
                except OSError:
                    if time.monotonic() > deadline or api.poll() is not None:
                        raise RuntimeError("the API did not start") from None
                    time.sleep(0.2)
            script = data / "p5.lua"
            script.write_text(LUA, encoding="utf-8")
            progress("P5 warm-up 3s")
            result_of(wrk(base, "/v1/alerts?state=active", 200, 3, args.stations, script))
            progress(f"P5 load: {args.rate:.0f} req/s for {args.seconds:.0f}s (two wrk processes)")
            procs = {
                "station": wrk(base, "/v1/stations/st-0-%05d", args.rate / 2, args.seconds, args.stations, script),
                "alerts": wrk(base, "/v1/alerts?state=active", args.rate / 2, args.seconds, args.stations, script),
            }
            results = {name: result_of(proc) for name, proc in procs.items()}
        finally:
            api.terminate()
            api.wait(30)
    figures = []
    achieved = sum(r["requests"] / (r["duration_us"] / 1e6) for r in results.values())
    for name, label in (("station", "GET /v1/stations/{id}"), ("alerts", "GET /v1/alerts?state=active")):
        r = results[name]
        rate = r["requests"] / (r["duration_us"] / 1e6)
        progress(f"  {label}: p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, {rate:.0f} req/s, "
                 f"errors {r['socket_errors'] + r['status_errors']}")
        figures.append(Figure("P5", f"{label} p50", r["p50_us"] / 1000, "ms", "—", None, r))
        figures.append(Figure("P5", f"{label} p99", r["p99_us"] / 1000, "ms", "<= 25 ms", r["p99_us"] <= 25_000, r))
    figures.append(Figure("P5", "API requests/s achieved (offered ~2,000)", achieved, "req/s", ">= 2,000",
                          achieved >= 0.95 * args.rate))
    write_result("p5_api", figures, notes=f"wrk closed-loop with think time, {CONNECTIONS} connections per "
                 f"endpoint; {args.stations} stations, {args.alerts} active alerts; {args.workers} uvicorn workers")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
