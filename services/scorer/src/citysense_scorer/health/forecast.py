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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity

from citysense_scorer.health.alert_ids import alert_id, build_event, ms_to_dt


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


# The series of k stations as the projection reads them: (first, last) bucket numbers -> (sums, counts), each
# (k, last - first + 1) in bucket order, zero where a station has no data. One Buckets (k=1) or a health bucket's
# columns (k stations).
Window = Callable[[int, int], "tuple[np.ndarray, np.ndarray]"]


def buckets_window(buckets: Buckets) -> Window:
    def window(first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        cells = np.array([buckets.data.get(b, (0.0, 0.0)) for b in range(first, last + 1)], np.float64)
        return cells[:, 0].reshape(1, -1), cells[:, 1].reshape(1, -1)
    return window


def _sums(columns: np.ndarray) -> np.ndarray:
    # add.accumulate runs strictly left to right (a plain sum may pair terms): every station's total is the same
    # bits however many stations are summed together
    return np.add.accumulate(columns, axis=1)[:, -1] if columns.shape[1] else np.zeros(len(columns))


def project(window: Window, k: int, last: int, width_ms: int, target: ForecastTarget, config: ForecastConfig,
            ) -> tuple[np.ndarray, np.ndarray]:
    """For k stations whose newest reading falls in bucket ``last``: (the window mean, NaN without data; the event
    time in ms at which the window mean is projected to pass the threshold, -1 for none within the horizon).

    Element-wise over the stations, and every sum runs bucket by bucket in time order, so one station's result is
    the same bits whether it is projected alone or with its bucket's other stations."""
    n = target.window_ms // width_ms
    steps = int(config.horizon_s * 1000 // width_ms)
    first = last - n + 1
    sums, counts = window(first, max(last, last - n + steps))  # the window, then what leaves it over the horizon
    total, count = _sums(sums[:, :n]), _sums(counts[:, :n])
    covered = (counts[:, :n] > 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        # level and slope: least squares through the recent bucket means (x in buckets before ``last``)
        recent = np.arange(max(0, n - max(2, int(config.trend_s * 1000 // width_ms))), n)
        xs = (recent - (n - 1)).astype(np.float64)
        has = counts[:, recent] > 0
        ys = np.where(has, sums[:, recent] / counts[:, recent], 0.0)
        points = has.sum(axis=1).astype(np.float64)
        mx = _sums(np.where(has, xs, 0.0)) / points
        my = _sums(ys) / points
        dx = np.where(has, xs - mx[:, None], 0.0)
        slope = _sums(dx * (ys - my[:, None]) * has) / _sums(dx * dx)
        level = my - slope * mx  # the fitted line at ``last``
        per_bucket = _sums(counts[:, recent]) / points
    expected = np.full(k, -1, np.int64)
    active = (count > 0) & (covered / n >= config.min_coverage) & ~_exceeds(target, mean) & (points >= 2)
    if not active.any():
        return mean, expected
    level, step = np.where(active, level, 0.0), np.where(active, slope, 0.0)
    per_bucket = np.where(active, per_bucket, 0.0)
    damping = 1.0 if config.trend_half_life_s is None else 2.0 ** (-width_ms / (config.trend_half_life_s * 1000))
    for s in range(1, steps + 1):
        level = level + step
        step = step * damping
        total = total + np.maximum(0.0, level) * per_bucket
        count = count + per_bucket
        if s - 1 < sums.shape[1]:  # bucket last - n + s leaves the window (zero where a station had no data)
            total, count = total - sums[:, s - 1], count - counts[:, s - 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            crossed = active & (expected < 0) & (count > 0) & _exceeds(target, total / count)
        expected[crossed] = (last + s + 1) * width_ms  # the end of the bucket in which the mean passes
    return mean, expected


def current_mean(buckets: Buckets, now_ms: int, window_ms: int) -> tuple[float | None, float]:
    """(mean over the window ending at ``now_ms``, fraction of its buckets holding data) of one station's series."""
    n = window_ms // buckets.width_ms
    last = now_ms // buckets.width_ms
    sums, counts = buckets_window(buckets)(last - n + 1, last)
    total, count = _sums(sums), _sums(counts)
    return (float(total[0] / count[0]) if count[0] else None), float((counts > 0).sum() / n)


def _exceeds(target: ForecastTarget, values: np.ndarray) -> np.ndarray:
    return values >= target.threshold if target.inclusive else values > target.threshold


@dataclass
class OpenForecast:
    alert_id: str
    opened_ms: int
    expected_ms: int
    misses: int = 0


class Forecaster:
    """Forecast state of one station over its long-window targets.

    Standalone it keeps the station's series itself (``add``, ``evaluate``). In a health bucket the series of all
    its stations live in columns (:mod:`citysense_scorer.health.forecast_history`): the bucket projects every due
    station at once and hands each its figures (``due``, ``decide``); then ``series`` is empty."""

    def __init__(self, station_id: str, targets: list[ForecastTarget], config: ForecastConfig,
                 keep_series: bool = True) -> None:
        self.station_id = station_id
        self.targets = targets
        self.config = config
        self.width_ms = int(config.bucket_s * 1000)
        metrics = dict.fromkeys(t.metric for t in targets)
        self.series: dict[str, Buckets] = {m: Buckets(self.width_ms) for m in metrics} if keep_series else {}
        self.open: dict[str, OpenForecast] = {}
        self.longest = {m: max(t.window_ms for t in targets if t.metric == m) for m in metrics}
        self.last_eval_bucket = -1

    def add(self, ts_ms: int, values: dict[str, float]) -> None:
        for metric, series in self.series.items():
            value = values.get(metric)
            if value is not None and value == value:
                series.add(ts_ms, value)

    def due(self, now_ms: int) -> bool:
        """Whether ``now_ms`` starts a bucket of event time not evaluated yet (targets are re-projected once per
        bucket)."""
        return now_ms // self.width_ms != self.last_eval_bucket

    def evaluate(self, now_ms: int, lat: float | None = None, lon: float | None = None) -> list[AlertEvent]:
        """Re-project every target from the station's own series (at most once per bucket of event time); events
        carry the station's location (``lat``, ``lon``)."""
        for metric, series in self.series.items():
            series.prune(now_ms // series.width_ms - self.longest[metric] // series.width_ms - 1)
        if not self.due(now_ms):
            return []
        last = now_ms // self.width_ms
        figures = {}
        for target in self.targets:
            mean, expected = project(buckets_window(self.series[target.metric]), 1, last, self.width_ms, target,
                                     self.config)
            figures[target.rule_id] = (float(mean[0]), int(expected[0]))
        return self.decide(now_ms, figures, lat, lon)

    def decide(self, now_ms: int, figures: dict[str, tuple[float, int]], lat: float | None = None,
               lon: float | None = None) -> list[AlertEvent]:
        """Open, keep, resolve or withdraw each target's forecast from its (window mean, NaN without data;
        projected crossing in ms, -1 for none) at ``now_ms`` (see :func:`project`). Events carry ``lat``/``lon``
        (the station's location) like fault and offline events, so a map or a bbox query finds them."""
        events: list[AlertEvent] = []
        where = (lat, lon)
        self.last_eval_bucket = now_ms // self.width_ms
        for target in self.targets:
            value, crossing = figures[target.rule_id]
            mean = None if value != value else value
            expected = None if crossing < 0 else crossing
            current = self.open.get(target.rule_id)
            if current is not None and mean is not None and target.exceeds(mean):
                events.append(self._event(target, current, AlertState.RESOLVED, now_ms, mean, where,
                                          f"{self._what(target)} reached {mean:.1f} {target.unit} as forecast"))
                del self.open[target.rule_id]
                continue
            if current is None and expected is not None:
                opened = OpenForecast(alert_id(self.station_id, target.rule_id + ".forecast", now_ms), now_ms,
                                      expected)
                self.open[target.rule_id] = opened
                events.append(self._event(
                    target, opened, AlertState.OPEN, now_ms, mean, where,
                    f"{self._what(target)} expected to pass {target.threshold:g} {target.unit} around "
                    f"{ms_to_dt(expected):%H:%M} UTC (now {mean or 0:.1f} {target.unit})"))
            elif current is not None and expected is None:
                current.misses += 1
                if current.misses >= self.config.withdraw_after:
                    events.append(self._event(target, current, AlertState.RESOLVED, now_ms, mean, where,
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
               mean: float | None, where: tuple[float | None, float | None], message: str) -> AlertEvent:
        number = 1 if state is AlertState.OPEN else 2
        return build_event(alert=fc.alert_id, number=number, state=state, kind=AlertKind.FORECAST,
                           severity=Severity.INFO, rule_id=target.rule_id + ".forecast", station_id=self.station_id,
                           opened_ms=fc.opened_ms, event_ms=now_ms, message=message, metric=target.metric,
                           value=None if mean is None else round(mean, 3), threshold=target.threshold,
                           window=f"{target.window_ms // 3_600_000}h", lat=where[0], lon=where[1])


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
