"""``make bench``: run every benchmark in turn; each writes bench/results/<name>.json and refreshes SUMMARY.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness import RESULTS, progress  # noqa: E402

# (figure ids, script, arguments): the order puts cheap, independent figures first.
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("P4", "p4_simulator.py", []),
    ("P5", "p5_api.py", []),
    ("H1", "health_state.py", []),  # ~20 s: no stack, the health operator's own code over a day of history
    ("P1", "p1_throughput.py", []),  # ~6-9 min: one stack, a ladder of 60 s rungs, a 30 s py-spy profile
    ("P2,P3,P6", "p2_p3_latency.py", []),  # ~3-4 min: full stack at 5,000 readings/s, 30 probes
    ("P6-floor", "p6_memory.py", []),  # ~5 min: the P2 load with the JVMs' native memory tracking
    ("P2", "p2_floor.py", []),  # ~2 min: broker + Kafka source + an empty sink
    ("P2-store", "store_contention.py", []),  # ~30 s: a one-row write beside the scorer's batch writes, SQLite
    ("P7", "p7_scaling.py", []),  # ~10-14 min: four full stacks (100 ... 100,000 stations) at 5,000 readings/s
    ("P8", "p8_idle.py", []),  # ~10-25 min: the default city at rest until its CPU settles, micro-batch only and with
    # the real-time path
]


def main(argv: list[str]) -> int:
    wanted = {arg.upper() for arg in argv}
    failures = []
    for ids, script, args in BENCHMARKS:
        if wanted and not wanted & set(ids.split(",")):
            continue
        progress(f"== {ids}: {script} {' '.join(args)}")
        started = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / script), *args], check=False)
        progress(f"== {ids}: {'ok' if done.returncode == 0 else f'FAILED ({done.returncode})'} "
                 f"in {time.monotonic() - started:.0f}s")
        if done.returncode:
            failures.append(ids)
    progress(f"summary: {RESULTS / 'SUMMARY.md'}")
    print((RESULTS / "SUMMARY.md").read_text(encoding="utf-8") if (RESULTS / "SUMMARY.md").exists() else "")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
