"""P8: what the stack costs at rest: ``make up``'s default city (50 stations at 1 Hz) in steady state, in cores.

The whole local stack runs as ``make up`` starts it; after --warm-up seconds (JVM start, the first batches, JIT),
the CPU time of every process of each component (its process group: the scorer's JVM and Python workers included)
and of the broker is read twice, --window seconds apart. Cores = CPU seconds / wall seconds. A/B in the same run:
the micro-batch-only scorer (CITYSENSE_SCORER_REALTIME=false), then the default with the real-time path.

    python bench/p8_idle.py [--stations 50] [--warm-up 90] [--window 60] [--no-ab]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402

COMPONENTS = ("scorer", "alert-api", "notifier", "simulator")
TARGET_CORES = 0.3


def cpu_by_component(run: pl.StackRun) -> dict[str, float]:
    state = run.refresh_state()
    out = {name: run.cpu_seconds(name) for name in COMPONENTS}
    for name in ("broker", "launcher"):
        pid = state.get(name)
        out[name] = sum(pl.cpu_seconds(p) for p in pl.group_members([int(pid)])) if name == "broker" and pid \
            else (pl.cpu_seconds(int(pid)) if pid else 0.0)
    return out


def measure(stations: int, realtime: bool, warm_up: float, window: float) -> dict:
    env = {"CITYSENSE_SCORER_REALTIME": "true" if realtime else "false"}
    with pl.StackRun(stations=stations, rate_hz=1, extra_env=env) as run:
        progress(f"P8 [{'real-time path' if realtime else 'micro-batch only'}]: {stations} stations up; "
                 f"warming up {warm_up:.0f} s")
        run.wait_scorer_running()
        time.sleep(warm_up)
        before, t0 = cpu_by_component(run), time.monotonic()
        time.sleep(window)
        after, seconds = cpu_by_component(run), time.monotonic() - t0
    cores = {name: round((after[name] - before[name]) / seconds, 3) for name in after}
    cores["total"] = round(sum(cores.values()), 3)
    parts = ", ".join(f"{k} {v:.2f}" for k, v in cores.items() if k != "total")
    progress(f"  cores: total {cores['total']:.2f} ({parts})")
    return cores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--warm-up", type=float, default=90)
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--no-ab", action="store_true", help="only the default (real-time path on)")
    args = parser.parse_args()
    load0 = pl.load_avg()
    figures = []
    for realtime in ([True] if args.no_ab else [False, True]):
        cores = measure(args.stations, realtime, args.warm_up, args.window)
        label = "" if realtime else "[A: micro-batch only] "
        figures.append(Figure("P8", f"{label}idle cost of `make up` ({args.stations} stations at 1 Hz), all processes",
                              cores["total"], "cores", f"<= {TARGET_CORES}" if realtime else "—",
                              cores["total"] <= TARGET_CORES if realtime else None, {"cores_by_component": cores}))
    write_result("p8_idle", figures, notes=(
        f"{args.stations} stations x 1 Hz; CPU over {args.window:.0f} s after {args.warm_up:.0f} s of warm-up; "
        "every process of each component's group (the scorer's JVM and Python workers, the broker's JVM). Machine "
        f"load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}." + pl.run_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
