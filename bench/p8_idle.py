"""P8: what the stack costs at rest: ``make up``'s default city (50 stations at 1 Hz) in steady state, in cores.

The whole local stack runs as ``make up`` starts it. The CPU time of every process of each component (its process
group: the scorer's JVM and Python workers included) and of the broker is read every --window seconds once the
scorer runs; cores = CPU seconds / wall seconds of a window. The JVMs' JIT compilers keep compiling for minutes after
start (Spark's planner and code generator, the Kafka client), so the steady state is the first window after
--warm-up whose total is within --settle of the window before it (or the last one, after --max-time; the figure then
says it did not settle). Every window's cores are kept in the result. A/B in the same run: the micro-batch-only
scorer (CITYSENSE_SCORER_REALTIME=false), then the default with the real-time path.

    python bench/p8_idle.py [--stations 50] [--warm-up 180] [--window 60] [--settle 0.1] [--max-time 720] [--no-ab]
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


def window_cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    cores = {name: round((after[name] - before[name]) / seconds, 3) for name in after}
    cores["total"] = round(sum(cores.values()), 3)
    return cores


def settled(windows: list[dict], warm_up: float, settle: float) -> bool:
    """The newest window starts after the warm-up and its total is within ``settle`` (a fraction) of the one before."""
    if len(windows) < 2 or windows[-1]["start_s"] < warm_up:
        return False
    now, before = windows[-1]["cores"]["total"], windows[-2]["cores"]["total"]
    return abs(now - before) <= settle * max(before, 1e-9)


def measure(stations: int, realtime: bool, warm_up: float, window: float, settle: float, max_time: float) -> dict:
    env = {"CITYSENSE_SCORER_REALTIME": "true" if realtime else "false"}
    windows: list[dict] = []
    with pl.StackRun(stations=stations, rate_hz=1, extra_env=env) as run:
        label = "real-time path" if realtime else "micro-batch only"
        progress(f"P8 [{label}]: {stations} stations up; a {window:.0f} s window at a time until the CPU settles")
        run.wait_scorer_running()
        t_start = time.monotonic()
        before, t0 = cpu_by_component(run), t_start
        while not settled(windows, warm_up, settle) and t0 - t_start < max_time:
            time.sleep(window)
            after, t1 = cpu_by_component(run), time.monotonic()
            windows.append({"start_s": round(t0 - t_start), "cores": window_cores(before, after, t1 - t0)})
            progress(f"  {t1 - t_start:4.0f} s after start: {windows[-1]['cores']['total']:.2f} cores")
            before, t0 = after, t1
    cores = windows[-1]["cores"]
    parts = ", ".join(f"{k} {v:.2f}" for k, v in cores.items() if k != "total")
    progress(f"  cores: total {cores['total']:.2f} ({parts})")
    return {"cores": cores, "settled": settled(windows, warm_up, settle), "windows": windows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--warm-up", type=float, default=180, help="seconds before a window may count as settled")
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--settle", type=float, default=0.1, help="largest change between two settled windows")
    parser.add_argument("--max-time", type=float, default=720, help="seconds of windows at most")
    parser.add_argument("--no-ab", action="store_true", help="only the default (real-time path on)")
    args = parser.parse_args()
    load0 = pl.load_avg()
    figures = []
    for realtime in ([True] if args.no_ab else [False, True]):
        found = measure(args.stations, realtime, args.warm_up, args.window, args.settle, args.max_time)
        cores = found["cores"]
        label = ("" if realtime else "[A: micro-batch only] ") + ("" if found["settled"] else "[not settled] ")
        figures.append(Figure("P8", f"{label}idle cost of `make up` ({args.stations} stations at 1 Hz), all processes",
                              cores["total"], "cores", f"<= {TARGET_CORES}" if realtime else "—",
                              cores["total"] <= TARGET_CORES if realtime else None,
                              {"cores_by_component": cores, "windows": found["windows"]}))
    write_result("p8_idle", figures, notes=(
        f"{args.stations} stations x 1 Hz; CPU over {args.window:.0f} s windows, the first after {args.warm_up:.0f} s "
        f"within {args.settle:.0%} of the one before; "
        "every process of each component's group (the scorer's JVM and Python workers, the broker's JVM). Machine "
        f"load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}." + pl.run_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
