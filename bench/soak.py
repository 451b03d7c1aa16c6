"""R7 (``make soak``): a 10-minute soak of the whole stack at 10,000 readings/s; lag and memory sampled as a curve.

The full local stack (broker, scorer, API, notifier, simulator at --stations x --rate-hz) runs for --minutes after
the scorer's first micro-batch. Every --every seconds the soak records: scorer lag (simulator delivered - scorer
rows, measured here, not the scorer's own gauge, which is stale while a micro-batch runs), the scorer's lag gauge,
rows/s, RSS per component and in total. Output: bench/results/soak.json (the curve, with verdicts) and
bench/results/soak.png (lag and memory over time, matplotlib).

Verdicts (reported, not asserted; :func:`judge`): lag bounded = smallest lag in the last minute < 10 s of input and
not above the smallest lag of the minute after warm-up by more than 5 s of input; memory bounded = total RSS in the
last minute at most 10 % above the second minute's (growth after warm-up means a leak or unbounded state), for the
whole stack and for the stack without its broker (Kafka's memory is its own: heap capped, log on disk), whose growth
per minute is reported beside them.

    python bench/soak.py [--minutes 10] [--stations 10000] [--rate-hz 1] [--every 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import RESULTS, Figure, machine, progress, write_summary  # noqa: E402

GiB = 1024 ** 3


def plot(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["t_s"] / 60 for p in curve]
    fig, (ax1, ax2) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    ax1.plot(t, [p["lag"] for p in curve], label="lag (measured)")
    ax1.plot(t, [p["lag_gauge"] for p in curve], label="scorer lag gauge", alpha=0.6)
    ax1.set_ylabel("readings behind")
    ax1.legend(loc="upper left")
    ax1b = ax1.twinx()
    ax1b.plot(t, [p["scored_per_s"] for p in curve], color="grey", alpha=0.4, label="scored/s")
    ax1b.set_ylabel("scored readings/s")
    for name in ("total", "scorer", "simulator", "broker", "alert-api", "notifier"):
        ax2.plot(t, [p["rss"].get(name, 0) / GiB for p in curve], label=name)
    ax2.set_ylabel("RSS (GiB)")
    ax2.set_xlabel("minutes")
    ax2.legend(loc="upper left", ncol=3, fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def judge(curve: list[dict], rate: float) -> dict:
    """The verdicts over a soak's curve (see the module docstring), the memory ones for the whole stack and for the
    stack without its broker. The broker's page cache and heap are Kafka's own business (bounded by its heap and
    retention); the stack without the broker is what says whether citysense itself leaks."""
    last = [p for p in curve if p["t_s"] >= curve[-1]["t_s"] - 60]
    second = [p for p in curve if 60 <= p["t_s"] < 120] or curve[: max(1, len(curve) // 5)]

    def without_broker(p: dict) -> int:
        return p["rss"]["total"] - p["rss"].get("broker", 0)

    lag_end = min(p["lag"] for p in last)
    lag_early = min(p["lag"] for p in second)
    rss_end = max(p["rss"]["total"] for p in last)
    rss_early = max(p["rss"]["total"] for p in second)
    rest_end, rest_early = max(map(without_broker, last)), max(map(without_broker, second))
    broker = [(p["t_s"], p["rss"].get("broker", 0)) for p in curve if p["t_s"] >= second[0]["t_s"]]
    span_min = (broker[-1][0] - broker[0][0]) / 60
    return {
        "lag_end_min": lag_end, "lag_early_min": lag_early,
        "lag_bounded": lag_end < 10 * rate and lag_end - lag_early < 5 * rate,
        "rss_end_max_bytes": rss_end, "rss_early_max_bytes": rss_early,
        "memory_bounded": rss_end <= 1.10 * rss_early,
        "rss_end_without_broker_bytes": rest_end, "rss_early_without_broker_bytes": rest_early,
        "memory_bounded_without_broker": rest_end <= 1.10 * rest_early,
        "broker_growth_per_min_bytes": (broker[-1][1] - broker[0][1]) / span_min if span_min > 0 else 0.0,
        "growth_by_component": {name: round(max(p["rss"].get(name, 0) for p in last)
                                            / max(1, max(p["rss"].get(name, 0) for p in second)), 3)
                                for name in curve[-1]["rss"] if name != "total"},
        "scored_per_s_mean": round((curve[-1]["scored"] - curve[0]["scored"]) / max(1e-9, curve[-1]["t_s"])),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--stations", type=int, default=10_000)
    parser.add_argument("--rate-hz", type=float, default=1.0)
    parser.add_argument("--every", type=float, default=5)
    parser.add_argument("--name", default="soak")
    args = parser.parse_args()
    rate = args.stations * args.rate_hz
    load0 = pl.load_avg()
    curve: list[dict] = []
    with pl.StackRun(stations=args.stations, rate_hz=args.rate_hz) as run:
        progress(f"soak: {args.stations:,} stations x {args.rate_hz:g} Hz = {rate:,.0f} readings/s; waiting for the "
                 "scorer's first micro-batch")
        run.wait_scorer_running()
        progress(f"soak: running {args.minutes:g} min, a sample every {args.every:g}s")
        t0 = time.monotonic()
        end = t0 + args.minutes * 60
        prev = None
        while (now := time.monotonic()) < end:
            sim, sc = pl.scrape(run.simulator_metrics_port), pl.scrape(run.scorer_metrics_port)
            delivered = pl.metric(sim, "citysense_simulator_readings_produced_total")
            done = pl.metric(sc, "citysense_scorer_rows_total")
            point = {"t_s": round(now - t0, 1), "delivered": delivered, "scored": done, "lag": delivered - done,
                     "lag_gauge": pl.metric(sc, "citysense_scorer_consumer_lag_messages"),
                     "scored_per_s": 0.0, "rss": run.rss(), "load_1m": pl.load_avg()}
            if prev is not None:
                point["scored_per_s"] = round((done - prev["scored"]) / max(1e-9, point["t_s"] - prev["t_s"]))
            curve.append(point)
            prev = point
            if len(curve) % max(1, int(60 / args.every)) == 0:
                progress(f"  {point['t_s'] / 60:.1f} min: lag {point['lag']:,.0f}, scored {point['scored_per_s']:,}/s, "
                         f"RSS {point['rss']['total'] / GiB:.2f} GiB")
            time.sleep(max(0.0, args.every - (time.monotonic() - now)))
    verdict = judge(curve, rate)
    lag_end, rss_end = verdict["lag_end_min"], verdict["rss_end_max_bytes"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {"name": args.name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "settings": vars(args),
           "figures": [asdict(Figure("R7", f"soak {args.minutes:g} min: smallest lag in the last minute", lag_end,
                                     "readings", "bounded", verdict["lag_bounded"])),
                       asdict(Figure("R7", f"soak {args.minutes:g} min: stack RSS in the last minute",
                                     rss_end / GiB, "GiB", "no growth after warm-up",
                                     verdict["memory_bounded"])),
                       asdict(Figure("R7", f"soak {args.minutes:g} min: stack RSS without the broker in the last "
                                     "minute", verdict["rss_end_without_broker_bytes"] / GiB, "GiB",
                                     "no growth after warm-up", verdict["memory_bounded_without_broker"])),
                       asdict(Figure("R7", f"soak {args.minutes:g} min: broker RSS growth", verdict[
                                     "broker_growth_per_min_bytes"] / 1024 ** 2, "MiB/min",
                                     "reference: Kafka's heap is capped (CITYSENSE_KAFKA_HEAP_MB)", None))],
           "offered_per_s": rate, "verdict": verdict,
           "notes": f"load (1 min) at start {load0:.1f}, at end {pl.load_avg():.1f}", "curve": curve}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    write_summary()
    plot(curve, RESULTS / f"{args.name}.png",
         f"soak: {rate:,.0f} readings/s offered, {args.minutes:g} min — lag bounded: {verdict['lag_bounded']}, "
         f"memory bounded: {verdict['memory_bounded']}\n(without the broker: "
         f"{verdict['memory_bounded_without_broker']})")
    progress(f"soak: {json.dumps(verdict)} -> {RESULTS / (args.name + '.json')}, .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
