"""P7: how cost grows with the city — throughput cost and alert latency at 100, 1,000, 10,000 and 100,000 stations.

The total input rate is held at --rate readings/s (default 5,000, the P2 load) at every size: rate_hz = rate /
stations (50 Hz at 100 stations ... 0.05 Hz at 100,000, i.e. one tick of 100,000 readings every 20 s). What grows is
the state (per-station windows, baselines, alert slots, station rows), so any change in cost is the city's size,
not its traffic. Per size, one full stack run (broker, scorer, API, notifier; the simulator starts once the scorer
runs, --settle s of load pass and the scorer's cycle has stopped falling (JIT warm-up, at most --warm-up-timeout
s) before anything is measured):
- throughput: the scorer's rows/s between two micro-batch completions at least --window s apart (offered vs
  scored, lag sampled every second) and its cost over the same span, scorer CPU seconds (driver + JVM + Python
  workers) per 1,000 readings; 2 cores / that cost = the CPU-bound capacity estimate (readings/s the scorer
  could take on this machine were it the only process);
- latency: --probes probe stations at PM2.5 = 500 as in P2/P3 (p50/p99 to the API and to the webhook);
- memory: PSS (and VmRSS) of the scorer and of the whole stack.
"Linear throughput, flat latency" holds when cost per reading and p99 stay roughly constant as stations grow.

The simulator's history length is set to 30 (default 300) for every size: at 100,000 stations the default ring
alone is 1.2 GB of float32 in the load generator, which would dominate the machine; the values it sends are still
every registry metric per reading.

Probes whose alert does not arrive within --probe-timeout count as that timeout (censored); the latency ratio
uses only sizes where every probe arrived.

    python bench/p7_scaling.py [--sizes 100,1000,10000,100000] [--rate 5000] [--window 30] [--probes 8]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402
from p2_p3_latency import GiB, measure, wait_caught_up, wait_warm  # noqa: E402

TICKS_PER_WINDOW = 3


def span_for(window: float, stations: int, rate: float) -> float:
    """The throughput window for a city: at least ``window`` s and at least :data:`TICKS_PER_WINDOW` of the
    simulator's ticks (every station sends once per stations / rate seconds: 20 s at 100,000 stations). With 30 s
    a window held one or two 20-s ticks depending on where the micro-batches fell, and the 100,000-station cost
    moved by 1.7x between two runs of the same code (0.117 and 0.197 CPU-s per 1,000 readings)."""
    return max(window, TICKS_PER_WINDOW * stations / rate)


def throughput_window(run: pl.StackRun, rate: float, window: float, max_wait: float) -> dict:
    """The scorer's rows/s and CPU cost between two micro-batch completions at least ``window`` s apart.

    The scorer's row counter moves only when a micro-batch finishes, and with station health on a backlog batch
    takes longer than a fixed 30 s window (a window that saw no completion read as "scored 0/s"). So the window is
    measured from the first completion seen to the last one, and sampling goes on until the two are ``window`` s
    apart or ``max_wait`` s have passed; CPU is read at the same two moments."""
    samples: list[tuple[float, float, float, float]] = []  # (t, produced, scored, scorer CPU-s)
    t0 = time.monotonic()
    done: list[int] = []  # indexes of samples right after a completion
    while (t := time.monotonic() - t0) < max_wait:
        sim, sc = pl.scrape(run.simulator_metrics_port), pl.scrape(run.scorer_metrics_port)
        if sim and sc:
            samples.append((t, pl.metric(sim, "citysense_simulator_readings_produced_total"),
                            pl.metric(sc, "citysense_scorer_rows_total"), run.cpu_seconds("scorer")))
            if len(samples) > 1 and samples[-1][2] > samples[-2][2]:
                done.append(len(samples) - 1)
            if len(done) >= 2 and samples[done[-1]][0] - samples[done[0]][0] >= window:
                break
        time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))
    if len(samples) < 2:
        return {"error": "no metrics"}
    lags = [d - p for _, d, p, _ in samples]
    tail = lags[-15:]
    out = {"offered_per_s": rate, "delivered_per_s": round((samples[-1][1] - samples[0][1]) /
                                                           max(1e-9, samples[-1][0] - samples[0][0])),
           "lag_start": lags[0], "lag_end_min": min(tail), "lag_max": max(lags),
           "bounded": min(tail) < max(2 * rate, 1) and min(tail) - lags[0] < rate, "batches_in_window": 0,
           "scored_per_s": None, "cpu_s_per_1k": None, "capacity_estimate_per_s": None}
    if len(done) < 2:
        out["error"] = f"fewer than two micro-batches finished within {max_wait:.0f} s"
        return out
    (t_a, _, p_a, c_a), (t_b, _, p_b, c_b) = samples[done[0]], samples[done[-1]]
    scored, cpu = p_b - p_a, c_b - c_a
    out.update({"window_s": round(t_b - t_a, 1), "batches_in_window": len(done) - 1,
                "scored_per_s": round(scored / (t_b - t_a)), "scorer_cpu_s": round(cpu, 2),
                "cpu_s_per_1k": round(1000 * cpu / scored, 4) if scored else None,
                "capacity_estimate_per_s": round(2 * scored / cpu) if cpu else None})
    return out


# The scorer's JVM heap per city size where the default (768m) is too small: with the default 8 health buckets,
# 100,000 stations make each bucket's state value ~12,500 stations of JSON, and the transformWithState state server
# ran out of heap on the first full micro-batch (java.lang.OutOfMemoryError in stateConnectionListenerThread; the
# scorer died). An operator of such a city sets CITYSENSE_SCORER_DRIVER_MEMORY the same way (docs/operations.md).
HEAP_BY_SIZE = {100_000: "1536m"}


def one_size(stations: int, rate: float, window: float, max_wait: float, settle: float, probes: int,
             spacing: float, catch_up: float, probe_timeout: float, warm_up: float) -> dict:
    rate_hz = rate / stations
    env = {"CITYSENSE_HISTORY": "30"}
    if stations in HEAP_BY_SIZE:
        env["CITYSENSE_SCORER_DRIVER_MEMORY"] = HEAP_BY_SIZE[stations]
    with pl.StackRun(stations=stations, rate_hz=rate_hz, extra_env=env, load_after_scorer=True) as run:
        progress(f"P7 {stations:,} stations x {rate_hz:g} Hz: stack up, waiting for the scorer, then the load")
        run.start_load()
        time.sleep(settle)  # past the first micro-batches (JIT, every station's state created): steady state
        warm = wait_warm(run, warm_up)
        behind, how = wait_caught_up(run, rate, catch_up)
        span = span_for(window, stations, rate)
        progress(f"  lag {behind:,.0f} after the catch-up wait ({how}); throughput window {span:.0f}s")
        tput = throughput_window(run, rate, span, max_wait)
        progress(f"  scored {tput.get('scored_per_s')}/s, {tput.get('cpu_s_per_1k')} scorer CPU-s per 1k, lag end "
                 f"{tput.get('lag_end_min')}; {probes} latency probes")
        rss_peak: dict = {}
        pss_peak: dict = {}
        stop = threading.Event()

        def watch_rss() -> None:
            nonlocal rss_peak, pss_peak
            while not stop.wait(2):
                now, pss = run.rss(), run.rss(pl.pss_bytes)
                if now["total"] > rss_peak.get("total", 0):
                    rss_peak = now
                if pss["total"] > pss_peak.get("total", 0):
                    pss_peak = pss

        watcher = threading.Thread(target=watch_rss, daemon=True)
        watcher.start()
        lat = measure(run, probes, spacing, 20, probe_timeout).summary()
        stop.set()
        watcher.join(5)
    return {"stations": stations, "rate_hz": rate_hz, "lag_before": behind, "lag_before_state": how,
            "warm_up_cycles_s": [round(c, 3) for c in warm],
            "scorer_heap": env.get("CITYSENSE_SCORER_DRIVER_MEMORY", "default"), **tput,
            "p2_p50_ms": lat["p2_p50_ms"], "p2_p99_ms": lat["p2_p99_ms"], "p3_p50_ms": lat["p3_p50_ms"],
            "p3_p99_ms": lat["p3_p99_ms"], "probes": probes, "p2_count": lat["p2_count"], "p3_count": lat["p3_count"],
            "rss_total_bytes": max(lat["rss_max_bytes"], rss_peak.get("total", 0)),
            "rss_scorer_bytes": rss_peak.get("scorer", 0),
            "pss_total_bytes": max(lat["pss_max_bytes"], pss_peak.get("total", 0)),
            "pss_scorer_bytes": pss_peak.get("scorer", 0)}


def ratio_figures(rows: list[dict]) -> list[Figure]:
    """Largest city / smallest city, for cost per reading and P2 p99. A size whose figure could not be measured
    (no two micro-batches finished, probes timed out) is not left out: the ratio is then a lower bound at best, so
    it cannot meet its target, and the note says which sizes were not measured."""
    out = []
    for name, key, target, measured in (
            ("cost per reading", "cpu_s_per_1k", "~1 (linear throughput)", lambda r: bool(r.get("cpu_s_per_1k"))),
            ("P2 p99", "p2_p99_ms", "~1 (flat latency)", lambda r: r["p2_count"] == r["probes"])):
        ok = [r for r in rows if measured(r)]
        missing = [f"{r['stations']:,}" for r in rows if not measured(r)]
        ratio = ok[-1][key] / ok[0][key] if len(ok) >= 2 else float("nan")
        label = f"{name}, largest / smallest city"
        if missing:
            label += f" (measured sizes only; not measured at {', '.join(missing)} stations)"
        meets = None if len(ok) < 2 else (ratio <= 1.5 and not missing)
        out.append(Figure("P7", label, ratio, "x", target, meets))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,10000,100000")
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--window", type=float, default=30, help="least span between the first and last "
                        "micro-batch completion the throughput is measured over")
    parser.add_argument("--window-max-wait", type=float, default=240)
    parser.add_argument("--settle", type=float, default=60, help="seconds of load before the throughput window")
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--catch-up-timeout", type=float, default=60)
    parser.add_argument("--warm-up-timeout", type=float, default=180)
    parser.add_argument("--probe-timeout", type=float, default=30)
    args = parser.parse_args()
    load0 = pl.load_avg()
    rows: list[dict] = []
    failed: list[dict] = []
    for stations in (int(s) for s in args.sizes.split(",")):
        if args.rate / stations > 100:
            progress(f"P7 skipping {stations} stations: {args.rate / stations:g} Hz > the simulator's 100 Hz")
            continue
        try:
            row = one_size(stations, args.rate, args.window, args.window_max_wait, args.settle, args.probes,
                           args.spacing, args.catch_up_timeout, args.probe_timeout, args.warm_up_timeout)
        except RuntimeError as exc:  # one size failing (e.g. the scorer never started) must not lose the others
            progress(f"  -> {stations:,}: FAILED: {str(exc)[:2000]}")
            failed.append({"stations": stations, "error": str(exc)[:2000]})
            continue
        rows.append(row)
        progress(f"  -> {stations:,}: scored {row.get('scored_per_s')}/s, cost {row.get('cpu_s_per_1k')} CPU-s/1k, "
                 f"P2 p99 {row['p2_p99_ms']:.0f} ms, P3 p99 {row['p3_p99_ms']:.0f} ms, "
                 f"PSS {row['pss_total_bytes'] / GiB:.2f} GiB")
    figures = []
    for r in rows:
        n = f"{r['stations']:,} stations"
        figures += [
            Figure("P7", f"{n}: scored readings/s at {args.rate:,.0f}/s offered",
                   r["scored_per_s"] if r.get("scored_per_s") is not None else float("nan"),
                   "readings/s", "—", r.get("bounded"), {k: v for k, v in r.items()}),
            Figure("P7", f"{n}: scorer CPU-s per 1,000 readings", r.get("cpu_s_per_1k") or float("nan"), "CPU-s",
                   "—", None),
            Figure("P7", f"{n}: P2 p99", r["p2_p99_ms"], "ms", "—", None),
            Figure("P7", f"{n}: stack memory (PSS sum)", r["pss_total_bytes"] / GiB, "GiB", "—", None),
            Figure("P7", f"{n}: stack RSS (VmRSS sum, shared pages repeated)", r["rss_total_bytes"] / GiB, "GiB",
                   "—", None),
        ]
    figures += ratio_figures(rows)
    for f in failed:
        figures.append(Figure("P7", f"{f['stations']:,} stations: run failed", float("nan"), "", "—", False, f))
    write_result("p7_scaling", figures, notes=(
        f"total rate held at {args.rate:,.0f} readings/s (rate_hz = rate / stations); simulator history 30; scorer "
        f"heap {', '.join(f'{k:,} stations: {v}' for k, v in HEAP_BY_SIZE.items())}, else the default; "
        f"throughput between micro-batch completions >= {args.window:.0f} s apart; {args.probes} latency probes "
        "per size; 'meets' on the ratio rows "
        f"= within 1.5x. Machine load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}." + pl.run_note()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
