"""P6's floor: where the stack's memory goes at the P2 load (5,000 readings/s), down to the JVMs' own categories.

The stack runs as in P2/P3 (5,000 stations at 1 Hz, the load once the scorer runs) with the JVMs' native memory
tracking on (``-XX:NativeMemoryTracking=summary``, through JAVA_TOOL_OPTIONS; it adds its own few MiB, shown as
"Native Memory Tracking"). Every --every seconds it records the PSS of each component and, inside the scorer, of its
JVM, its Python driver and Spark's Python workers, plus what each JVM has committed by category (heap, metaspace,
code, GC, threads, ...). At the end a full collection of each JVM's heap gives its live set: the heap that is
needed, against the heap G1 keeps committed at the peak.

    python bench/p6_memory.py [--stations 5000] [--duration 150] [--every 10]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402

MiB = 1 << 20
NMT_LINE = re.compile(r"^-\s+(.+?) \(reserved=\d+KB, committed=(\d+)KB\)", re.M)
NMT_TOTAL = re.compile(r"Total: reserved=\d+KB, committed=(\d+)KB")
HEAP_USED = re.compile(r"garbage-first heap\s+total (\d+)K, used (\d+)K")


def jcmd(pid: int, *command: str) -> str:
    done = subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout


def parse_native_memory(text: str) -> dict[str, int]:
    """MiB committed by category (those of at least 1 MiB), and the total, from ``VM.native_memory summary``."""
    out = {m.group(1).strip(): int(m.group(2)) // 1024 for m in NMT_LINE.finditer(text)}
    if total := NMT_TOTAL.search(text):
        out["total"] = int(total.group(1)) // 1024
    return {name: mib for name, mib in out.items() if mib}


def parse_heap(text: str) -> tuple[int, int]:
    """(committed, used) G1 heap in MiB from ``GC.heap_info``; (0, 0) when the answer has no G1 heap line."""
    found = HEAP_USED.search(text)
    return (int(found.group(1)) // 1024, int(found.group(2)) // 1024) if found else (0, 0)


def native_memory(pid: int) -> dict[str, int]:
    return parse_native_memory(jcmd(pid, "VM.native_memory", "summary"))


def live_heap_mib(pid: int) -> tuple[int, int]:
    """(committed, used) heap in MiB right after a full collection."""
    jcmd(pid, "GC.run")
    return parse_heap(jcmd(pid, "GC.heap_info"))


def scorer_parts(run: pl.StackRun) -> dict[str, int]:
    """PSS of the scorer's JVM, its Python driver and Spark's Python workers (daemons included)."""
    return {part: sum(pl.pss_bytes(pid) for pid in pids) for part, pids in run.scorer_processes().items()}


def jvm_pids(run: pl.StackRun) -> dict[str, int]:
    out = {}
    if jvm := run.scorer_processes()["jvm"]:
        out["scorer"] = jvm[0]
    for pid in pl.group_members([int(run.refresh_state()["broker"])]):
        if "kafka.Kafka" in pl.cmdline(pid):
            out["broker"] = pid
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stations", type=int, default=5000)
    parser.add_argument("--duration", type=float, default=150, help="seconds of load sampled")
    parser.add_argument("--every", type=float, default=10)
    args = parser.parse_args()
    load0 = pl.load_avg()
    env = {"JAVA_TOOL_OPTIONS": "-XX:NativeMemoryTracking=summary"}
    samples: list[dict] = []
    with pl.StackRun(stations=args.stations, rate_hz=1, load_after_scorer=True, extra_env=env) as run:
        progress(f"P6 floor: stack up, {args.stations} stations x 1 Hz with native memory tracking; "
                 "waiting for the scorer, then the load")
        run.start_load()
        jvms = jvm_pids(run)
        t0 = time.monotonic()
        while time.monotonic() - t0 < args.duration:
            time.sleep(args.every)
            stack = run.rss(pl.pss_bytes)
            sample = {"t_s": round(time.monotonic() - t0), "stack_mib": {k: v // MiB for k, v in stack.items()},
                      "scorer_mib": {k: v // MiB for k, v in scorer_parts(run).items()},
                      "nmt_mib": {name: native_memory(pid) for name, pid in jvms.items()}}
            samples.append(sample)
            progress(f"  {sample['t_s']:4d} s: stack {sample['stack_mib']['total']} MiB, scorer "
                     + ", ".join(f"{k} {v}" for k, v in sample["scorer_mib"].items()) + " MiB")
        live = {name: live_heap_mib(pid) for name, pid in jvms.items()}
    peak = max(samples, key=lambda s: s["stack_mib"]["total"])
    figures = [
        Figure("P6", "stack PSS at the P2 load with native memory tracking on (max of the samples)",
               peak["stack_mib"]["total"] / 1024, "GiB", "<= 2 GiB", peak["stack_mib"]["total"] <= 2048,
               {"at_peak": peak}),
    ]
    for name, (committed, used) in live.items():
        heap_at_peak = peak["nmt_mib"].get(name, {}).get("Java Heap", 0)
        figures.append(Figure("P6", f"{name} JVM: live heap after a full collection (committed at the stack's peak: "
                                    f"{heap_at_peak} MiB)", used, "MiB", "—", None,
                              {"committed_after_full_gc_mib": committed, "committed_at_peak_mib": heap_at_peak}))
    write_result("p6_memory", figures, notes=(
        f"{args.stations} stations x 1 Hz, sampled every {args.every:.0f} s for {args.duration:.0f} s of load; PSS "
        "by component and inside the scorer, each JVM's committed memory by native memory tracking category. "
        f"Machine load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}." + pl.run_note()
        + " Samples: " + "; ".join(f"{s['t_s']} s {s['stack_mib']['total']} MiB" for s in samples)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
