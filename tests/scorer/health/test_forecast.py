"""Exceedance forecast: fires before the crossing on a clear ramp, stays quiet on flat data."""

from __future__ import annotations

import numpy as np
from citysense_common.contract import AlertKind, AlertState, Severity
from citysense_scorer.health.forecast import ForecastConfig, Forecaster, ForecastTarget, current_mean

T0 = 1_767_225_600_000
HOUR = 3_600_000
TARGET = ForecastTarget("pm25-eu-24h", "pm2_5", 24 * HOUR, 25.0, metric_label="PM2.5", unit="µg/m³")


def run(values_per_min: list[float]) -> tuple[Forecaster, list, list]:
    fc = Forecaster("st-1", [TARGET], ForecastConfig())
    events, means = [], []
    for i, v in enumerate(values_per_min):
        now = T0 + i * 60_000
        fc.add(now, {"pm2_5": v})
        events.extend((i, e) for e in fc.evaluate(now))
        series = fc.series["pm2_5"]
        live = [c for b, c in series.data.items() if b > now // series.width_ms - 24 * 12]
        means.append(sum(s for s, _ in live) / sum(c for _, c in live))
        assert current_mean(series, now, 24 * HOUR)[0] == means[-1]
    return fc, events, means


def test_fires_before_the_crossing_on_a_clear_ramp() -> None:
    rng = np.random.default_rng(1)
    flat = list(rng.normal(12, 1.5, 24 * 60))
    ramp = [12 + 0.05 * i + rng.normal(0, 1.5) for i in range(18 * 60)]  # +3 µg/m³ per hour for 18 h
    _, events, means = run(flat + ramp)
    crossing = next(i for i, m in enumerate(means) if m > 25)
    opens = [(i, e) for i, e in events if e.state is AlertState.OPEN]
    assert opens, "no forecast on a clear ramp"
    first_i, first = opens[0]
    assert first_i < crossing
    assert first.kind is AlertKind.FORECAST and first.severity is Severity.INFO
    assert "24-h PM2.5 mean expected to pass 25 µg/m³ around" in first.message
    resolved = [(i, e) for i, e in events if e.state is AlertState.RESOLVED and e.alert_id == first.alert_id]
    assert resolved and resolved[0][0] >= crossing  # came true: resolved when the mean got there


def test_silent_on_flat_data() -> None:
    rng = np.random.default_rng(2)
    _, events, _ = run(list(rng.normal(18, 3, 40 * 60)))
    assert events == []


def test_silent_without_a_full_enough_window() -> None:
    # A ramp starting with the station's first reading: no 24-h history to forecast from.
    _, events, _ = run([10 + 0.1 * i for i in range(6 * 60)])
    assert events == []
