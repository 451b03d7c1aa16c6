"""P5: alert API latency for GET /v1/stations/{id} and GET /v1/alerts?state=active at 2,000 requests/s.

The API runs as in production (`citysense-alert-api`, one uvicorn worker per core) over a SQLite store seeded with
--stations stations and --alerts active alerts, next to a real broker. The load comes from wrk (Debian package),
two processes at half the rate each, one per endpoint. Requests follow a fixed schedule (the Lua `delay` hands each
free connection the next send slot, from a monotonic clock through LuaJIT's ffi), so the offered rate does not sink
when responses slow down, as it does with a fixed think time; a server that cannot keep up still shows as a lower
achieved rate (every connection busy), reported beside the percentiles.

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
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } p5_timespec; int clock_gettime(int, p5_timespec *); ]]
local ts = ffi.new("p5_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)  -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval_ms = tonumber(os.getenv("P5_INTERVAL_MS"))
local connections = tonumber(os.getenv("P5_CONNECTIONS"))
local stations = tonumber(os.getenv("P5_STATIONS"))
local path = os.getenv("P5_PATH")
local next_at = nil
request = function()
  local p = path
  if string.find(path, "%", 1, true) then p = string.format(path, math.random(0, stations - 1)) end
  return wrk.format("GET", p)
end
delay = function()
  local t = now_ms()
  if next_at == nil or next_at < t - interval_ms * connections then next_at = t end  -- no catch-up burst
  next_at = next_at + interval_ms
  local d = next_at - t
  if d < 0 then return 0 end
  return d
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"socket_errors":%d,"status_errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""
CONNECTIONS = 32  # per wrk process: enough that a 25 ms response at 1,000 req/s still finds a free connection


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
    env = {**os.environ, "P5_PATH": path, "P5_STATIONS": str(stations), "P5_INTERVAL_MS": str(1000 / rate),
           "P5_CONNECTIONS": str(CONNECTIONS)}
    return subprocess.Popen(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:.0f}s", "-s", str(script), url],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def result_of(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=600)
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"wrk printed no result:\n{out}")


def measure(data: Path, bootstrap: str, args: argparse.Namespace, cache_s: float) -> dict[str, dict]:
    """One API run (fresh processes) under the two-endpoint load; wrk's result per endpoint."""
    from citysense_localstack.servers.net import free_port

    port = free_port()
    env = {**os.environ, "CITYSENSE_DATA_DIR": str(data), "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap,
           "CITYSENSE_API_PORT": str(port), "CITYSENSE_API_TOKEN": "bench-token-0123456789abcdef",
           "CITYSENSE_LOG_LEVEL": "WARNING", "CITYSENSE_API_WORKERS": str(args.workers),
           "CITYSENSE_API_ALERT_CACHE_S": str(cache_s)}
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
        label = "on" if cache_s > 0 else "off"
        progress(f"P5 alert-page cache {label}: warm-up 3s")
        result_of(wrk(base, "/v1/alerts?state=active", 200, 3, args.stations, script))
        progress(f"P5 alert-page cache {label}: {args.rate:.0f} req/s for {args.seconds:.0f}s (two wrk processes)")
        procs = {
            "station": wrk(base, "/v1/stations/st-0-%05d", args.rate / 2, args.seconds, args.stations, script),
            "alerts": wrk(base, "/v1/alerts?state=active", args.rate / 2, args.seconds, args.stations, script),
        }
        results = {name: result_of(proc) for name, proc in procs.items()}
    finally:
        api.terminate()
        api.wait(30)
    for name, r in results.items():
        rate = r["requests"] / (r["duration_us"] / 1e6)
        progress(f"  {LABELS[name]}: p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
                 f"{rate:.0f} req/s, errors {r['socket_errors'] + r['status_errors']}")
    return results


LABELS = {"station": "GET /v1/stations/{id}", "alerts": "GET /v1/alerts?state=active"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--alerts", type=int, default=200)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="API worker processes")
    parser.add_argument("--cache-s", type=float, default=1.0, help="the API's alert-page cache max age")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("P5 needs wrk: apt-get install wrk", file=sys.stderr)
        return 2

    from citysense_localstack.servers.kafka import running_kafka

    with tempfile.TemporaryDirectory() as tmp, running_kafka() as broker:
        data = Path(tmp)
        progress(f"P5 seeding {args.stations} stations and {args.alerts} active alerts")
        seed(data, args.stations, args.alerts)
        # First the worst case for the alert list (every request builds its page: alerts changing all the time),
        # then the API as configured, where an unchanged page is served from the cache.
        uncached = measure(data, broker.bootstrap, args, 0.0)
        results = measure(data, broker.bootstrap, args, args.cache_s)
    figures = []
    achieved = sum(r["requests"] / (r["duration_us"] / 1e6) for r in results.values())
    for name, label in LABELS.items():
        r = results[name]
        figures.append(Figure("P5", f"{label} p50", r["p50_us"] / 1000, "ms", "—", None, r))
        figures.append(Figure("P5", f"{label} p99", r["p99_us"] / 1000, "ms", "<= 25 ms", r["p99_us"] <= 25_000, r))
    figures.append(Figure("P5", "API requests/s achieved (offered ~2,000)", achieved, "req/s", ">= 95 % of offered",
                          achieved >= 0.95 * args.rate))
    for name, label in LABELS.items():
        r = uncached[name]
        figures.append(Figure("P5", f"{label} p99 [alert-page cache off]", r["p99_us"] / 1000, "ms", "—", None, r))
    achieved_off = sum(r["requests"] / (r["duration_us"] / 1e6) for r in uncached.values())
    figures.append(Figure("P5", "API requests/s achieved [alert-page cache off]", achieved_off, "req/s", "—", None))
    write_result("p5_api", figures, notes=f"wrk on a fixed send schedule, {CONNECTIONS} connections per "
                 f"endpoint; {args.stations} stations, {args.alerts} active alerts (pages of 100); {args.workers} "
                 f"uvicorn workers; alert-page cache max age {args.cache_s} s (off in the [cache off] run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
