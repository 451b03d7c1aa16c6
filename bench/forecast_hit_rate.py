"""Exceedance-forecast hit rate on simulated PM2.5 episodes (24-h mean vs the EU 2030 daily limit, 25 µg/m³).

Each episode: 24 h of a station's normal (level 8-18 µg/m³, diurnal swing, noise; one value per minute) so the 24-h
window is full, then 24 h of one of three shapes, drawn at random:

* ramp - a steady rise (0.5-4 µg/m³ per hour) for 6-18 h, then a plateau: the mean may or may not get to 25;
* bump - a rise that turns back after 2-6 h: a near miss unless the bump is big;
* flat - nothing happens.

The forecaster (:mod:`citysense_scorer.health.forecast`, horizon 6 h) runs on every reading. Truth is the same bucketed
24-h mean the forecaster and the threshold engine use. Figures:

* hit rate (precision) - forecasts after which the mean really crossed within the horizon + 1 h;
* recall - episodes whose mean crossed that had a forecast before the crossing; median lead time;
* timing - median |actual - announced| crossing time for the hits;
* false alarms on flat episodes.

Run: ``python bench/forecast_hit_rate.py [--episodes 300] [--seed 1]``; writes bench/results/forecast_hit_rate.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from citysense_common.contract import AlertState  # noqa: E402
from citysense_scorer.health.forecast import ForecastConfig, Forecaster, ForecastTarget, current_mean  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402

MIN = 60_000
HOUR = 3_600_000
T0 = 1_767_225_600_000
TARGET = ForecastTarget("pm25-eu-24h", "pm2_5", 24 * HOUR, 25.0, metric_label="PM2.5", unit="µg/m³")
TOLERANCE_MS = HOUR


def simulate(rng: np.random.Generator) -> tuple[str, np.ndarray]:
    minutes = np.arange(48 * 60)
    level = rng.uniform(8, 18)
    diurnal = 3 * np.sin(2 * np.pi * minutes / (24 * 60))
    noise = rng.normal(0, 2, minutes.size)
    shape = rng.choice(["ramp", "bump", "flat"], p=[0.5, 0.3, 0.2])
    extra = np.zeros(minutes.size)
    t = (minutes - 24 * 60) / 60.0  # hours since the episode began
    if shape == "ramp":
        slope, duration = rng.uniform(0.5, 4), rng.uniform(6, 18)
        extra = np.where(t > 0, slope * np.minimum(t, duration), 0)
    elif shape == "bump":
        slope, turn = rng.uniform(1, 5), rng.uniform(2, 6)
        extra = np.where(t > 0, np.maximum(0, slope * np.where(t < turn, t, 2 * turn - t)), 0)
    return str(shape), np.maximum(0, level + diurnal + noise + extra)


def run_episode(values: np.ndarray, config: ForecastConfig) -> dict:
    fc = Forecaster("bench", [TARGET], config)
    forecasts: list[tuple[int, int]] = []  # (issued at, announced crossing)
    crossing = None
    for i, v in enumerate(values):
        now = T0 + i * MIN
        fc.add(now, {"pm2_5": float(v)})
        for event in fc.evaluate(now):
            if event.state is AlertState.OPEN:
                forecasts.append((now, fc.open[TARGET.rule_id].expected_ms))
        mean, _ = current_mean(fc.series["pm2_5"], now, TARGET.window_ms)
        if crossing is None and i >= 24 * 60 and mean is not None and TARGET.exceeds(mean):
            crossing = now
    return {"forecasts": forecasts, "crossing": crossing}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    config = ForecastConfig()
    horizon_ms = int(config.horizon_s * 1000)
    rng = np.random.default_rng(args.seed)
    hits = misses = flat_false = crossed = crossed_forecast = 0
    leads: list[float] = []
    errors: list[float] = []
    by_shape: dict[str, int] = {}
    for n in range(args.episodes):
        shape, values = simulate(rng)
        by_shape[shape] = by_shape.get(shape, 0) + 1
        result = run_episode(values, config)
        crossing = result["crossing"]
        for issued, announced in result["forecasts"]:
            if crossing is not None and issued <= crossing <= issued + horizon_ms + TOLERANCE_MS:
                hits += 1
                errors.append(abs(crossing - announced) / HOUR)
            else:
                misses += 1
                flat_false += shape == "flat"
        if crossing is not None:
            crossed += 1
            before = [issued for issued, _ in result["forecasts"] if issued <= crossing]
            if before:
                crossed_forecast += 1
                leads.append((crossing - before[0]) / HOUR)
        if (n + 1) % 50 == 0:
            progress(f"{n + 1}/{args.episodes} episodes")
    issued = hits + misses
    hit_rate = hits / issued if issued else 0.0
    recall = crossed_forecast / crossed if crossed else 0.0
    detail = {
        "episodes": args.episodes, "shapes": by_shape, "forecasts": issued, "hits": hits, "misses": misses,
        "false_alarms_on_flat": flat_false, "episodes_crossed": crossed, "crossed_with_forecast": crossed_forecast,
        "recall": round(recall, 3), "median_lead_h": round(statistics.median(leads), 2) if leads else None,
        "median_timing_error_h": round(statistics.median(errors), 2) if errors else None,
        "horizon_h": config.horizon_s / 3600, "tolerance_h": TOLERANCE_MS / HOUR, "seed": args.seed,
    }
    figures = [
        Figure("F1", "exceedance forecast hit rate (24-h PM2.5 > 25, came true within horizon + 1 h)",
               round(hit_rate * 100, 1), "%", ">= 80", hit_rate >= 0.8, detail),
        Figure("F2", "exceedance forecast recall (crossings announced in advance)", round(recall * 100, 1), "%",
               ">= 80", recall >= 0.8),
    ]
    path = write_result("forecast_hit_rate", figures,
                        notes="simulated episodes; see bench/forecast_hit_rate.py for the episode shapes")
    print(f"hit rate {hit_rate:.1%} ({hits}/{issued}), recall {recall:.1%} ({crossed_forecast}/{crossed}), "
          f"median lead {detail['median_lead_h']} h, median timing error {detail['median_timing_error_h']} h; "
          f"{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
