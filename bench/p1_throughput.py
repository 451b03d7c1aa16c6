"""P1: highest sustained readings/s simulator -> broker -> scorer -> store, with consumer lag bounded for a window.

One stack run (broker + scorer; the scorer's JVM starts once), then a ladder of offered rates. Each rung runs the
real simulator (``citysense-simulator run``, every reading with all registry metrics) as its own process against the
stack's broker at ``--stations`` stations and rate_hz = rate / stations, for ``--window`` seconds (default 60).

Lag is measured by the benchmark, not read from the scorer's gauge (that gauge is only refreshed when a
micro-batch finishes, so it reads a stale 0 during a long batch): lag = readings the simulator had delivered
(``citysense_simulator_readings_produced_total``) - readings the scorer had finished
(``citysense_scorer_rows_total``, all results), sampled every second. Between rungs the simulator stops and the
scorer drains, so every rung starts from lag 0.

A rung is **sustained** when, over its window:
- the simulator delivered >= 90 % of the offered rate (else the load generator, not the pipeline, was the limit),
- the scorer finished >= 90 % of what was delivered (throughput = scorer rows / window),
- lag is bounded: the smallest lag in the last 15 s is < 2 s of input + the largest micro-batch seen (the lag
  right after a commit is one cycle of input at best), and it is not trending up: the smallest lag in the last 15 s
  minus the smallest lag in the 15 s before the middle of the window is < 2 s of input. Both counters move in
  steps (the simulator's by a whole round of stations, the scorer's by a whole micro-batch) and are sampled once a
  second, so two troughs of a steady lag differ by up to one sample of input; the old tolerance of 1 s failed
  steady rungs on sampling alone.
The ladder stops at the first rung that is not sustained; P1 = the highest sustained rung's scorer throughput.

py-spy records the scorer's Python driver and its Python workers (``--subprocesses``) during the highest rung and
writes the top frames to bench/results/p1_profile.txt.

    python bench/p1_throughput.py [--rates 500,1000,2500,5000,7500,10000,15000,25000,50000] [--stations 1000]
                                  [--window 60]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import RESULTS, Figure, health_off, progress, write_result  # noqa: E402

PROFILE = RESULTS / ("p1_profile_health_off.txt" if health_off() else "p1_profile.txt")


def processed(samples: dict[str, float]) -> float:
    return pl.metric(samples, "citysense_scorer_rows_total")


def drain(run: pl.StackRun, target: float, timeout: float) -> float:
    """Wait until the scorer has processed ``target`` rows (or stops moving); returns the processed count."""
    deadline = time.monotonic() + timeout
    last, still_since = -1.0, time.monotonic()
    while time.monotonic() < deadline:
        done = processed(pl.scrape(run.scorer_metrics_port))
        if done >= target:
            return done
        if done != last:
            last, still_since = done, time.monotonic()
        elif time.monotonic() - still_since > 30:
            return done
        time.sleep(1)
    return last


def start_profile(run: pl.StackRun, seconds: float) -> subprocess.Popen | None:
    spy = shutil.which("py-spy") or str(pl.BIN / "py-spy")
    if not Path(spy).exists():
        progress("py-spy not found (pip install py-spy); no profile")
        return None
    out = run.tmp / "p1.pyspy"
    return subprocess.Popen([spy, "record", "--pid", str(run.scorer_pid()), "--subprocesses", "--format", "raw",
                             "--rate", "50", "--duration", str(int(seconds)), "--nonblocking", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


PART_NAMES = {"jvm": "JVM (Spark)", "python_driver": "Python driver", "python_workers": "Python workers"}


def process_cpu(run: pl.StackRun) -> dict[str, float]:
    """CPU seconds so far of the scorer's processes, by part (JVM, driver, workers)."""
    return {PART_NAMES[part]: sum(pl.cpu_seconds(pid) for pid in pids)
            for part, pids in run.scorer_processes().items()}


def write_profile(run: pl.StackRun, proc: subprocess.Popen, rate: float) -> str:
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "py-spy did not finish"
    raw = run.tmp / "p1.pyspy"
    if not raw.exists():
        return f"py-spy wrote nothing: {err[-500:]}"
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_process: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_process[frames[0][:100]] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    lines = [f"py-spy record --subprocesses of the scorer (driver pid {run.scorer_pid()}) during the P1 rung at "
             f"{rate:,.0f} readings/s offered; {total} samples at 50 Hz (idle threads not sampled).",
             "Spark's JVM time shows up in the driver as waiting in py4j (socket recv in clientserver.py).", "",
             "Samples by process:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_process.most_common(10)] if total else []
    cpu0, cpu1 = getattr(proc, "cpu0", None), getattr(proc, "cpu1", None)
    rows = (getattr(proc, "rows1", 0) or 0) - (getattr(proc, "rows0", 0) or 0)
    if cpu0 is not None and cpu1 is not None:
        lines += ["", f"CPU seconds during the profiled window ({rows:,.0f} readings finished by the scorer; processes "
                  "that exited meanwhile are missing):"]
        for name in sorted(cpu1, key=lambda n: -(cpu1[n] - cpu0.get(n, 0.0))):
            used = cpu1[name] - cpu0.get(name, 0.0)
            per = f", {1000 * used / rows:.3f} CPU-s per 1k readings" if rows else ""
            lines.append(f"  {used:7.2f} s  {name}{per}")
    lines += ["", "Top frames by own time (the frame on top of the stack):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(30)] if total else []
    lines += ["", "Top frames by inclusive time (on the stack anywhere):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(40)] if total else []
    PROFILE.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"{total} samples -> {PROFILE}"


def rung_verdict(samples: list[tuple[float, float, float]], rate: float, window: float) -> dict:
    """Throughputs, lag and the sustained verdict of one rung from its samples (t, delivered, processed)."""
    # The two counters are scraped from two processes: the simulator counts a round when Kafka acknowledged it, and
    # the scorer may have processed it already, so the difference dips below zero by up to a round. Nothing can be
    # processed before it was delivered: such a dip is zero lag (it once made a trend of +1 round and failed a rung).
    lag = [(t, max(0.0, d - p)) for t, d, p in samples]
    half = window / 2
    tail = [lag_ for t, lag_ in lag if t >= window - 15]
    middle = [lag_ for t, lag_ in lag if half - 15 <= t < half]
    first_t, first_d, first_p = samples[0] if samples else (0, 0, 0)
    last_t, last_d, last_p = samples[-1] if samples else (1, 0, 0)
    span = max(1e-9, last_t - first_t)
    delivered_rate = (last_d - first_d) / span
    scored_rate = (last_p - first_p) / span
    tail_min = min(tail) if tail else float("inf")
    trend = tail_min - (min(middle) if middle else 0)
    batch_max = max((b[2] - a[2] for a, b in zip(samples, samples[1:], strict=False)), default=0.0)
    bound = 2 * rate + batch_max
    out = {
        "delivered_per_s": round(delivered_rate), "scored_per_s": round(scored_rate),
        "lag_tail_min": tail_min, "lag_trend": trend, "lag_bound": bound, "largest_batch": batch_max,
        "lag_max": max((x for _, x in lag), default=0),
        "load_generator_ok": delivered_rate >= 0.9 * rate, "scorer_kept_up": scored_rate >= 0.9 * delivered_rate,
        "lag_bounded": tail_min < bound and trend < 2 * rate,
        "lag_curve": [(round(t, 1), int(x)) for t, x in lag][:: max(1, len(lag) // 30)],
    }
    out["sustained"] = out["load_generator_ok"] and out["scorer_kept_up"] and out["lag_bounded"]
    return out


def run_rung(run: pl.StackRun, rate: float, stations: int, window: float, index: int,
             profile: bool) -> tuple[dict, subprocess.Popen | None]:
    port = pl.free_port()
    base = processed(pl.scrape(run.scorer_metrics_port))
    cpu0 = run.cpu_seconds("scorer")
    sim = pl.start_simulator(run, stations, rate / stations, port, "bench-0")
    spy = None
    samples: list[tuple[float, float, float]] = []  # (t, delivered, processed since base)
    try:
        deadline = time.monotonic() + 30
        while not pl.scrape(port) and time.monotonic() < deadline:  # simulator up (pre-fills history first)
            if sim.poll() is not None:
                raise RuntimeError(f"the simulator exited with {sim.returncode}")
            time.sleep(0.2)
        if profile:
            spy = start_profile(run, min(window, 30))
            spy.cpu0 = process_cpu(run) if spy else None  # type: ignore[attr-defined]
            spy.rows0 = processed(pl.scrape(run.scorer_metrics_port)) if spy else None  # type: ignore[attr-defined]
        t0 = time.monotonic()
        produced0 = pl.metric(pl.scrape(port), "citysense_simulator_readings_produced_total")
        while (t := time.monotonic() - t0) < window:
            s_sim, s_sc = pl.scrape(port), pl.scrape(run.scorer_metrics_port)
            if s_sim and s_sc:
                samples.append((t, pl.metric(s_sim, "citysense_simulator_readings_produced_total"),
                                processed(s_sc) - base))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))
        if spy is not None:
            spy.cpu1 = process_cpu(run)  # type: ignore[attr-defined]
            spy.rows1 = processed(pl.scrape(run.scorer_metrics_port))  # type: ignore[attr-defined]
        rss = run.rss()
        scorer_cpu = run.cpu_seconds("scorer") - cpu0
    finally:
        pl.stop_group(sim)
    delivered_total = samples[-1][1] if samples else 0.0
    result = {"offered": rate, "stations": stations, "rate_hz": rate / stations, "window_s": window,
              **rung_verdict(samples, rate, window), "rss_total_bytes": rss["total"],
              "scorer_cpu_s_per_1k_readings": round(1000 * scorer_cpu / max(1.0, samples[-1][2] if samples else 0),
                                                    4),
              "produced_before_window": produced0}
    if not profile:  # the profiled rung is the last thing before the stack stops
        drained = drain(run, base + delivered_total, timeout=max(60.0, 3 * window))
        result["drained"] = drained >= base + delivered_total
    return result, spy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="500,1000,2500,5000,7500,10000,15000,25000,50000")
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--window", type=float, default=60)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    if max(rates) / args.stations > 100:
        parser.error("rate / stations must be <= 100 Hz (the simulator's limit); raise --stations")
    load0 = pl.load_avg()
    ladder: list[dict] = []
    profile_note = "no profile"
    with pl.StackRun(stations=0, components="scorer") as run:
        progress("P1 stack up (broker + scorer); waiting for the scorer's first micro-batch")
        run.warm_up_scorer()
        drain(run, float("inf"), timeout=10)
        for i, rate in enumerate(rates):
            last_chance = i == len(rates) - 1
            progress(f"P1 rung {i + 1}/{len(rates)}: {rate:,.0f} readings/s offered ({args.stations} stations x "
                     f"{rate / args.stations:g} Hz) for {args.window:.0f}s")
            result, spy = run_rung(run, rate, args.stations, args.window, i, profile=False)
            ladder.append(result)
            progress(f"  delivered {result['delivered_per_s']:,}/s, scored {result['scored_per_s']:,}/s, lag tail "
                     f"min {result['lag_tail_min']:,.0f} (bound {result['lag_bound']:,.0f}), trend "
                     f"{result['lag_trend']:+,.0f} -> {'sustained' if result['sustained'] else 'NOT sustained'}")
            if not result["sustained"] or last_chance:
                break
        if not args.no_profile:
            # Profile at the highest offered rate that was tried: the scorer is saturated there.
            rate = ladder[-1]["offered"]
            progress(f"P1 profiling the scorer for 30 s at {rate:,.0f} readings/s (py-spy --subprocesses)")
            _, spy = run_rung(run, rate, args.stations, 30, len(ladder), profile=True)
            if spy is not None:
                profile_note = write_profile(run, spy, rate)
                progress(f"  {profile_note}")
    sustained = [r for r in ladder if r["sustained"]]
    best = max((r["scored_per_s"] for r in sustained), default=0)
    figures = [Figure("P1", "sustained readings/s through the scorer (lag bounded)", best, "readings/s",
                      ">= 50,000", best >= 50_000,
                      {"ladder": [{k: v for k, v in r.items() if k != "lag_curve"} for r in ladder],
                       "lag_curves": {str(int(r["offered"])): r["lag_curve"] for r in ladder}})]
    for r in ladder:
        figures.append(Figure("P1", f"rung {r['offered']:,.0f}/s offered: scored/s "
                              f"({'sustained' if r['sustained'] else 'not sustained'})", r["scored_per_s"],
                              "readings/s", "—", None))
    write_result("p1_throughput", figures, notes=(
        f"{args.stations} stations, rate_hz = rate / stations, {args.window:.0f} s per rung; sustained = simulator "
        "delivered >= 90 % of offered, scorer finished >= 90 % of delivered, smallest lag in the last 15 s < 2 s of "
        "input + the largest micro-batch and not 2 s of input above the smallest lag before mid-window. Lag = "
        "simulator delivered - scorer rows (measured by the benchmark). Machine load (1 min) at start "
        f"{load0:.1f}, at end {pl.load_avg():.1f}. "
        f"Profile: {profile_note}." + pl.run_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
