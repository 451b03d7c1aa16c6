"""H1: what one health bucket costs per micro-batch as the scorer's uptime grows (no Spark: the operator's own code).

A bucket of 625 stations (5,000 stations over the default 8 buckets), one reading per station and micro-batch:
the time to process the batch and to encode what is written back to the state store, and the bytes written, first
after ten minutes of history and again after a day (the 24-hour forecast windows full). The day of history is fed
in 5-minute steps (one micro-batch per forecast bucket), then measured in 1-second steps as in the stream.

Target: flat - after a day within 1.5x of the first ten minutes (the state of a long-running scorer must not grow
with its uptime). Usage: python bench/health_state.py [stations]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, progress, write_result  # noqa: E402

T0 = 1_767_225_600_000
STEP_MS = 300_000  # one micro-batch per 5-minute forecast bucket while the history fills


def measure(stations: int) -> dict[str, dict[str, float]]:
    from citysense_common.paths import config_dir
    from citysense_common.registry import load_registry
    from citysense_common.settings import load_settings
    from citysense_scorer.alerts.rules import load_rules
    from citysense_scorer.health.bucket import BatchColumns, HealthBucket, HealthContext
    from citysense_scorer.health.settings import HealthSettings
    from citysense_scorer.health.spark import encode_state

    registry = load_registry()
    ctx = HealthContext.build(registry, "city", load_settings(HealthSettings), load_rules(config_dir() / "rules.yaml",
                                                                                          registry))
    names = list(ctx.metrics)
    typical = np.array([(m.range.min + m.range.max) / 2 if m.range.max < 1e4 else 20.0 for m in ctx.metrics.values()])
    rng = np.random.default_rng(1)
    ids = [f"st-{i:05d}" for i in range(stations)]
    bucket = HealthBucket(ctx)

    def batch(ts_ms: int) -> tuple[float, float, int]:
        values = typical + rng.normal(0, 0.5, (stations, len(names)))
        cols = BatchColumns(stations=ids, starts=np.arange(stations), ends=np.arange(stations) + 1,
                            ts_ms=np.full(stations, ts_ms, np.int64), values=values, names=names,
                            lat=np.full(stations, 52.5), lon=np.full(stations, 13.4))
        start = time.perf_counter()
        bucket.process_columns(cols, ts_ms + 500)
        processed = time.perf_counter()
        written = len(encode_state("r", bucket.dump_json()))
        puts, _ = bucket.history_changes()
        written += sum(len(v) for v in puts.values())
        return processed - start, time.perf_counter() - processed, written

    def steady(base_ms: int, n: int = 20) -> dict[str, float]:
        runs = [batch(base_ms + k * 1000) for k in range(n)][n // 4:]  # the first few warm the kept objects
        return {"process_ms": round(1000 * float(np.median([r[0] for r in runs])), 1),
                "encode_ms": round(1000 * float(np.median([r[1] for r in runs])), 1),
                "written_kb": round(float(np.median([r[2] for r in runs])) / 1000, 1)}

    for k in range(2):
        batch(T0 + k * STEP_MS)
    early = steady(T0 + 2 * STEP_MS)
    progress(f"after 10 min: {early}")
    started, day = time.monotonic(), 24 * 3600_000 // STEP_MS
    for k in range(day):
        batch(T0 + 600_000 + 20_000 + k * STEP_MS)
        if k % 48 == 47:
            progress(f"history {(k + 1) * STEP_MS / 3600_000:.0f} h of 24 ({time.monotonic() - started:.0f} s)")
    late = steady(T0 + 600_000 + 20_000 + day * STEP_MS)
    progress(f"after 24 h: {late}")
    return {"after_10_min": early, "after_24_h": late}


def main(argv: list[str]) -> int:
    stations = int(argv[0]) if argv else 625
    progress(f"H1: one health bucket of {stations} stations, 10 min and then 24 h of history")
    result = measure(stations)
    early, late = result["after_10_min"], result["after_24_h"]
    cost = {k: r["process_ms"] + r["encode_ms"] for k, r in result.items()}
    ratio = cost["after_24_h"] / cost["after_10_min"]
    detail = {"stations_per_bucket": stations, **result}
    figures = [
        Figure("H1", f"health bucket cost per micro-batch after a day vs. after 10 min ({stations} stations)",
               round(ratio, 2), "x", "<= 1.5", ratio <= 1.5, detail),
        Figure("H1", "health bucket: bytes written per micro-batch after a day", late["written_kb"], "kB",
               f"<= 1.5x after 10 min ({early['written_kb']} kB)", late["written_kb"] <= 1.5 * early["written_kb"]),
    ]
    path = write_result("health_state", figures)
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
