"""Exceedance forecast for long-window mean rules (e.g. the 24-hour PM2.5 mean): info-level ``forecast`` alerts.

Method (pure, no Spark): a rolling W-hour mean changes by what enters minus what leaves. What *leaves* over the
next hours is known exactly - the oldest buckets of the current window. What *enters* is extrapolated from the last
``trend_s`` (1 h): a least-squares line through the recent bucket means, its slope damped with a half-life of
``trend_half_life_s`` (1 h; pollution episodes level off), clamped at zero, with the recent readings per bucket.
Stepping bucket by bucket gives the projected mean; the first step past the threshold is the expected crossing.
A forecast opens when that crossing lies within ``horizon_s`` and resolves when the threshold is reached
(the forecast came true; the threshold rule takes over) or when ``withdraw_after`` consecutive evaluations no
longer project a crossing within the horizon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity

from citysense_scorer.alert_ids import alert_id, build_event, ms_to_dt


@dataclass(frozen=True)
class ForecastConfig:
    horizon_s: float = 6 * 3600.0  # only announce crossings expected within this
    bucket_s: float = 300.0  # resolution of the kept series and of the projection
    trend_s: float = 3600.0  # recent stretch the level and slope are fitted on
    min_coverage: float = 0.75  # fraction of the window that must hold data before forecasting
    min_window_s: float = 6 * 3600.0  # rules over shorter windows react fast enough on their own
    withdraw_after: int = 3  # evaluations without a projected crossing before the forecast is withdrawn
    trend_half_life_s: float | None = 3600.0  # damp the extrapolated slope (episodes level off); None = linear


@dataclass(frozen=True)
class ForecastTarget:
    """One long-window mean rule band to forecast (rule id, metric, window, threshold)."""

    rule_id: str
    metric: str
    window_ms: int
    threshold: float
    inclusive: bool = False  # comparator ">=" instead of ">"
    label: str = ""
    metric_label: str = ""
    unit: str = ""

    def exceeds(self, value: float) -> bool:
        return value >= self.threshold if self.inclusive else value > self.threshold


@dataclass
class Buckets:
    """Per-bucket [sum, count] of one metric, keyed by bucket number (event time // bucket width)."""

    width_ms: int
    data: dict[int, list[float]] = field(default_factory=dict)

    def add(self, ts_ms: int, value: float) -> None:
        cell = self.data.setdefault(ts_ms // self.width_ms, [0.0, 0.0])
        cell[0] += value
        cell[1] += 1

    def prune(self, keep_from: int) -> None:
        for b in [b for b in self.data if b < keep_from]:
            del self.data[b]


def current_mean(buckets: Buckets, now_ms: int, window_ms: int) -> tuple[float | None, float]:
    """(mean over the window ending at ``now_ms``, fraction of its buckets holding data)."""
    n = window_ms // buckets.width_ms
    last = now_ms // buckets.width_ms
    live = [buckets.data[b] for b in range(last - n + 1, last + 1) if b in buckets.data]
    count = sum(c for _, c in live)
    return (sum(s for s, _ in live) / count if count else None), len(live) / n


def project_crossing(buckets: Buckets, now_ms: int, target: ForecastTarget, config: ForecastConfig) -> int | None:
    """Event time (ms) at which the window mean is projected to pass the threshold, or None within the horizon."""
    width = buckets.width_ms
    n = target.window_ms // width
    last = now_ms // width
    window = [(b, buckets.data[b]) for b in range(last - n + 1, last + 1) if b in buckets.data]
    total = sum(c[0] for _, c in window)
    count = sum(c[1] for _, c in window)
    if not count or len(window) / n < config.min_coverage or target.exceeds(total / count):
        return None
    recent_n = max(2, int(config.trend_s * 1000 // width))
    recent = [(b, c) for b, c in window if b > last - recent_n]
    if len(recent) < 2:
        return None
    xs = np.array([b for b, _ in recent], dtype=float)
    ys = np.array([c[0] / c[1] for _, c in recent])
    slope, intercept = np.polyfit(xs, ys, 1)
    per_bucket = float(np.mean([c[1] for _, c in recent]))
    level = intercept + slope * last
    damping = 1.0 if config.trend_half_life_s is None else 2.0 ** (-width / (config.trend_half_life_s * 1000))
    step = float(slope)
    for k in range(1, int(config.horizon_s * 1000 // width) + 1):
        level += step
        step *= damping
        entering = max(0.0, level)
        total += entering * per_bucket
        count += per_bucket
        leaving = buckets.data.get(last - n + k)
        if leaving is not None:
            total -= leaving[0]
            count -= leaving[1]
        if count > 0 and target.exceeds(total / count):
            return (last + k + 1) * width  # the end of the bucket in which the mean passes
    return None


@dataclass
class OpenForecast:
    alert_id: str
    opened_ms: int
    expected_ms: int
    misses: int = 0


class Forecaster:
    """Forecast state of one station over its long-window targets."""

    def __init__(self, station_id: str, targets: list[ForecastTarget], config: ForecastConfig) -> None:
        self.station_id = station_id
        self.targets = targets
        self.config = config
        width = int(config.bucket_s * 1000)
        self.series: dict[str, Buckets] = {t.metric: Buckets(width) for t in targets}
        self.open: dict[str, OpenForecast] = {}
        self.longest = {m: max(t.window_ms for t in targets if t.metric == m) for m in self.series}
        self.last_eval_bucket = -1

    def add(self, ts_ms: int, values: dict[str, float]) -> None:
        for metric, series in self.series.items():
            value = values.get(metric)
            if value is not None and value == value:
                series.add(ts_ms, value)

    def evaluate(self, now_ms: int, lat: float | None = None, lon: float | None = None) -> list[AlertEvent]:
        """Re-project every target (at most once per bucket of event time)."""
        events: list[AlertEvent] = []
        for metric, series in self.series.items():
            series.prune(now_ms // series.width_ms - self.longest[metric] // series.width_ms - 1)
        bucket = now_ms // int(self.config.bucket_s * 1000)
        if bucket == self.last_eval_bucket:
            return events
        self.last_eval_bucket = bucket
        for target in self.targets:
            series = self.series[target.metric]
            mean, _ = current_mean(series, now_ms, target.window_ms)
            current = self.open.get(target.rule_id)
            if current is not None and mean is not None and target.exceeds(mean):
                events.append(self._event(target, current, AlertState.RESOLVED, now_ms, mean,
                                          f"{self._what(target)} reached {mean:.1f} {target.unit} as forecast"))
                del self.open[target.rule_id]
                continue
            expected = project_crossing(series, now_ms, target, self.config)
            if current is None and expected is not None:
                opened = OpenForecast(alert_id(self.station_id, target.rule_id + ".forecast", now_ms), now_ms,
                                      expected)
                self.open[target.rule_id] = opened
                events.append(self._event(
                    target, opened, AlertState.OPEN, now_ms, mean,
                    f"{self._what(target)} expected to pass {target.threshold:g} {target.unit} around "
                    f"{ms_to_dt(expected):%H:%M} UTC (now {mean or 0:.1f} {target.unit})"))
            elif current is not None and expected is None:
                current.misses += 1
                if current.misses >= self.config.withdraw_after:
                    events.append(self._event(target, current, AlertState.RESOLVED, now_ms, mean,
                                              f"{self._what(target)} no longer expected to pass "
                                              f"{target.threshold:g} {target.unit}"))
                    del self.open[target.rule_id]
            elif current is not None:
                current.misses = 0
        return events

    @staticmethod
    def _what(target: ForecastTarget) -> str:
        hours = target.window_ms // 3_600_000
        return f"{hours}-h {target.metric_label or target.metric} mean"

    def _event(self, target: ForecastTarget, fc: OpenForecast, state: AlertState, now_ms: int,
               mean: float | None, message: str) -> AlertEvent:
        number = 1 if state is AlertState.OPEN else 2
        return build_event(alert=fc.alert_id, number=number, state=state, kind=AlertKind.FORECAST,
                           severity=Severity.INFO, rule_id=target.rule_id + ".forecast", station_id=self.station_id,
                           opened_ms=fc.opened_ms, event_ms=now_ms, message=message, metric=target.metric,
                           value=None if mean is None else round(mean, 3), threshold=target.threshold,
                           window=f"{target.window_ms // 3_600_000}h")


def targets_from_rules(rules: object, config: ForecastConfig,
                       units: dict[str, str] | None = None) -> list[ForecastTarget]:
    """One target per long-window mean rule: its lowest band (the first threshold that will be crossed)."""
    labels = {"pm2_5": "PM2.5", "pm10": "PM10", "noise_level": "noise"}
    out = []
    for rule in getattr(rules, "rules", ()):
        if rule.aggregation != "mean" or rule.window_ms < config.min_window_s * 1000:
            continue
        out.append(ForecastTarget(rule.id, rule.metric, rule.window_ms, rule.bands[0].threshold,
                                  inclusive=rule.comparator == ">=", label=rule.bands[0].label,
                                  metric_label=labels.get(rule.metric, rule.metric),
                                  unit=(units or {}).get(rule.metric, "")))
    return out
