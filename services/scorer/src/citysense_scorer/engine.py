"""Alert engine: windows, threshold rules, outliers and the alert lifecycle, across micro-batches.

Input per micro-batch is small: the batch's valid readings are first reduced (vectorised, pandas) to one row per
(station, series, bucket) plus one row per station, and only those aggregates touch the per-key state. A *series* is
(metric, window), shared by every rule over the same metric and window; it keeps 60 buckets of window/60 each
(sum, count, max), so memory per station is bounded and the window edge is accurate to 1/60 of its length.

Determinism: :meth:`AlertEngine.apply` depends only on the state and the batch input - no wall clock. That is what
makes replay exact (see :mod:`citysense_scorer.engine_log`): ``alert_id`` and ``event_id`` are content hashes of
station, rule, opening time and the alert's event number.

Event time and watermark: the watermark is the largest event time seen minus ``watermark_ms``. Readings behind it
are *late*: stored and counted by the caller, but never fed to aggregates, so they cannot reopen alerts.
Evaluation happens in event-time *slices* of ``eval_step_ms`` (default 5 s): once per station per slice that has
readings, at the station's newest event time in that slice, slices in time order. Live 1 Hz data in micro-batches of
a few seconds costs about one evaluation per station per batch, while a replayed file or a backlog read in one
micro-batch is evaluated as it happened - an episode that starts and ends inside one batch still opens and resolves
its alert, at the right event times.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.registry import Registry

from citysense_scorer.rules import BUCKETS_PER_WINDOW, DERIVED_METRICS, Rule, RuleSet

_NS = uuid.UUID("6f1c1d2e-8a51-4f0e-9a43-3c6a2b7d9e10")
OUTLIER_RULE_ID = "outlier"
_WINDOW_WORDS = {60_000: "1-minute", 600_000: "10-minute", 3_600_000: "1-hour", 28_800_000: "8-hour",
                 86_400_000: "24-hour"}
_AGG_WORDS = {"mean": "mean", "max": "maximum", "value": "reading"}
_METRIC_LABELS = {"pm2_5": "PM2.5", "pm10": "PM10", "noise_level": "Noise", "heat_index": "Heat index",
                  "temperature": "Temperature", "humidity": "Humidity"}


def _iso(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _window_text(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


@dataclass
class SeriesState:
    width_ms: int
    buckets: dict[int, list[float]] = field(default_factory=dict)  # bucket -> [sum, count, max]
    first_ms: int = 0
    last_ms: int = -1
    last_value: float = math.nan

    def add(self, bucket: int, total: float, count: int, peak: float) -> None:
        cur = self.buckets.get(bucket)
        if cur is None:
            self.buckets[bucket] = [total, count, peak]
        else:
            cur[0] += total
            cur[1] += count
            cur[2] = max(cur[2], peak)

    def prune(self) -> None:
        oldest = self.last_ms // self.width_ms - BUCKETS_PER_WINDOW + 1
        for b in [b for b in self.buckets if b < oldest]:
            del self.buckets[b]

    def aggregate(self, how: str) -> float | None:
        if how == "value":
            return None if math.isnan(self.last_value) else self.last_value
        oldest = self.last_ms // self.width_ms - BUCKETS_PER_WINDOW + 1
        live = [v for b, v in self.buckets.items() if b >= oldest]
        count = sum(v[1] for v in live)
        if not count:
            return None
        return sum(v[0] for v in live) / count if how == "mean" else max(v[2] for v in live)


@dataclass
class AlertSlot:
    """Lifecycle state of one (station, rule)."""

    alert_id: str | None = None
    opened_ms: int = 0
    band: int = -1
    events: int = 0
    pending_since: int | None = None
    cooldown_until: int = -1


@dataclass
class StationInfo:
    lat: float | None = None
    lon: float | None = None
    last_ms: int = -1


@dataclass
class EngineState:
    version: int = -1  # last applied batch id
    max_event_ms: int = -1
    series: dict[tuple[str, str, int], SeriesState] = field(default_factory=dict)  # (station, metric, window)
    slots: dict[tuple[str, str], AlertSlot] = field(default_factory=dict)  # (station, rule_id)
    stations: dict[str, StationInfo] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchInput:
    """What one micro-batch contributes to the engine (small; also the replay log entry)."""

    # station_id, slice, metric, window_ms, bucket, sum, count, max, first_ms, last_ms, last_value
    series_aggs: pd.DataFrame
    stations: pd.DataFrame  # station_id, slice, last_ms, lat, lon, outlier (bool), zmax, outlier_metrics (str)


class AlertEngine:
    def __init__(self, rules: RuleSet, registry: Registry, *, watermark_ms: int, outlier_cooldown_ms: int,
                 eval_step_ms: int = 5000) -> None:
        self.rules = rules
        self.eval_step_ms = max(1, eval_step_ms)
        self.registry = registry
        self.watermark_ms = watermark_ms
        self.outlier_cooldown_ms = outlier_cooldown_ms
        self.state = EngineState()
        self.series_keys = rules.series()

    # -- input reduction (vectorised) ----------------------------------------------------------------------------
    def watermark(self) -> int:
        return self.state.max_event_ms - self.watermark_ms if self.state.max_event_ms >= 0 else -(2**62)

    def late_mask(self, ts_ms: np.ndarray) -> np.ndarray:
        return ts_ms < self.watermark()

    def reduce(self, readings: pd.DataFrame) -> BatchInput:
        """Valid, on-time readings (station_id, ts_ms, lat, lon, <metric columns>, outliers, zmax) -> BatchInput."""
        frames = []
        readings = readings.assign(slice=readings["ts_ms"] // self.eval_step_ms)
        keys = ["station_id", "slice", "bucket"]
        for metric, window_ms in self.series_keys:
            if metric not in readings:
                continue
            part = readings.loc[readings[metric].notna(), ["station_id", "slice", "ts_ms", metric]]
            if part.empty:
                continue
            width = max(1, window_ms // BUCKETS_PER_WINDOW)
            part = part.assign(bucket=part["ts_ms"] // width).sort_values(["station_id", "ts_ms"], kind="stable")
            grouped = part.groupby(keys, sort=True)[metric]
            agg = grouped.agg(["sum", "count", "max", "last"]).reset_index()
            times = part.groupby(keys, sort=True)["ts_ms"].agg(["min", "max"]).reset_index()
            agg["first_ms"] = times["min"].to_numpy()
            agg["last_ms"] = times["max"].to_numpy()
            agg = agg.rename(columns={"last": "last_value"})
            agg["metric"] = metric
            agg["window_ms"] = window_ms
            frames.append(agg)
        cols = ["station_id", "slice", "metric", "window_ms", "bucket", "sum", "count", "max", "first_ms", "last_ms",
                "last_value"]
        series_aggs = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
        ordered = readings.sort_values(["station_id", "ts_ms"], kind="stable")
        by_station = ordered.groupby(["station_id", "slice"], sort=True)
        stations = pd.DataFrame({
            "last_ms": by_station["ts_ms"].max(),
            "lat": by_station["lat"].last(),
            "lon": by_station["lon"].last(),
            "outlier": by_station["n_outliers"].sum() > 0,
            "zmax": by_station["zmax"].max(),
        })
        # Outlier names: a Python join per group, so only over the (few) readings that have any.
        flagged = ordered[ordered["n_outliers"] > 0]
        names = flagged.groupby(["station_id", "slice"], sort=True)["outlier_names"].agg(
            lambda s: ",".join(sorted({n for v in s for n in v.split(",") if n})))
        stations["outlier_metrics"] = names.reindex(stations.index).fillna("").astype(object)
        stations = stations.reset_index()
        return BatchInput(series_aggs, stations)

    # -- state transition ----------------------------------------------------------------------------------------
    def apply(self, batch_id: int, data: BatchInput) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        series_aggs, stations = data.series_aggs, data.stations
        if len(stations):
            if "slice" not in stations:  # a log entry written before slices existed: one slice
                stations = stations.assign(slice=0)
                series_aggs = series_aggs.assign(slice=0)
            aggs_by_slice = dict(tuple(series_aggs.groupby("slice", sort=True))) if len(series_aggs) else {}
            for number, slice_stations in stations.groupby("slice", sort=True):
                events.extend(self._apply_slice(aggs_by_slice.get(number, series_aggs.iloc[0:0]), slice_stations))
        self.state.version = batch_id
        return events

    def _apply_slice(self, series_aggs: pd.DataFrame, stations: pd.DataFrame) -> list[AlertEvent]:
        st = self.state
        events: list[AlertEvent] = []
        batch_first: dict[tuple[str, str, int], int] = {}
        for row in series_aggs.itertuples(index=False):
            key = (row.station_id, row.metric, int(row.window_ms))
            batch_first[key] = min(batch_first.get(key, int(row.first_ms)), int(row.first_ms))
            series = st.series.get(key)
            if series is None:
                series = st.series[key] = SeriesState(max(1, int(row.window_ms) // BUCKETS_PER_WINDOW),
                                                      first_ms=int(row.first_ms))
            series.add(int(row.bucket), float(row.sum), int(row.count), float(row.max))
            series.first_ms = min(series.first_ms, int(row.first_ms))
            if int(row.last_ms) >= series.last_ms:
                series.last_ms, series.last_value = int(row.last_ms), float(row.last_value)
        for row in stations.itertuples(index=False):
            info = st.stations.setdefault(row.station_id, StationInfo())
            if int(row.last_ms) >= info.last_ms:
                info.last_ms = int(row.last_ms)
                if row.lat is not None and not pd.isna(row.lat):
                    info.lat, info.lon = float(row.lat), float(row.lon)
            st.max_event_ms = max(st.max_event_ms, int(row.last_ms))
            for rule in self.rules.rules:
                key = (row.station_id, rule.metric, rule.window_ms)
                series = st.series.get(key)
                if series is None or key not in batch_first:
                    continue
                series.prune()
                if not rule.partial and series.last_ms - series.first_ms < rule.window_ms - series.width_ms:
                    continue  # not a complete window yet
                value = series.aggregate(rule.aggregation)
                if value is not None:
                    events.extend(self._step(row.station_id, rule, value, series.last_ms, batch_first[key], info))
            events.extend(self._outlier_step(row, info))
        return events

    def _step(self, station: str, rule: Rule, value: float, now: int, since: int,
              info: StationInfo) -> list[AlertEvent]:
        # One evaluation per slice: a condition first seen in this slice counts as holding since the slice's first
        # reading of the series (`since`), so `for` is measured in event time, not in batches.
        slot = self.state.slots.setdefault((station, rule.id), AlertSlot())
        band = rule.band_of(value)
        if slot.alert_id is None:
            if band < 0:
                slot.pending_since = None
                return []
            if slot.pending_since is None:
                slot.pending_since = since
            if now - slot.pending_since < rule.for_ms or now < slot.cooldown_until:
                return []
            slot.alert_id = _uuid(f"{station}|{rule.id}|{now}")
            slot.opened_ms, slot.band, slot.events, slot.pending_since = now, band, 0, None
            return [self._event(slot, rule, station, AlertState.OPEN, value, now, info)]
        if value <= rule.clear:
            event = self._event(slot, rule, station, AlertState.RESOLVED, value, now, info)
            self.state.slots[(station, rule.id)] = AlertSlot(cooldown_until=now + rule.cooldown_ms)
            return [event]
        band = max(band, 0)  # between clear and the lowest band: hysteresis keeps the alert in its lowest band
        if band != slot.band:
            slot.band = band
            return [self._event(slot, rule, station, AlertState.UPDATE, value, now, info)]
        return []

    def _outlier_step(self, row: Any, info: StationInfo) -> list[AlertEvent]:
        """Outliers raise at most one info alert per station per cooldown; it resolves on the next clean batch."""
        station, now = row.station_id, int(row.last_ms)
        slot = self.state.slots.setdefault((station, OUTLIER_RULE_ID), AlertSlot())
        if bool(row.outlier):
            if slot.alert_id is None and now >= slot.cooldown_until:
                slot.alert_id = _uuid(f"{station}|{OUTLIER_RULE_ID}|{now}")
                slot.opened_ms, slot.band, slot.events = now, 0, 0
                return [self._outlier_event(slot, station, AlertState.OPEN, row, now, info)]
            return []
        if slot.alert_id is not None:
            event = self._outlier_event(slot, station, AlertState.RESOLVED, row, now, info)
            self.state.slots[(station, OUTLIER_RULE_ID)] = AlertSlot(
                cooldown_until=slot.opened_ms + self.outlier_cooldown_ms)
            return [event]
        return []

    # -- events ----------------------------------------------------------------------------------------------------
    def _event(self, slot: AlertSlot, rule: Rule, station: str, state: AlertState, value: float, now: int,
               info: StationInfo) -> AlertEvent:
        band = rule.bands[max(slot.band, 0)]
        unit = DERIVED_METRICS.get(rule.metric) or (
            self.registry.metrics[rule.metric].unit if rule.metric in self.registry.metrics else "")
        label = _METRIC_LABELS.get(rule.metric, rule.metric)
        what = f"{label} {_WINDOW_WORDS.get(rule.window_ms, _window_text(rule.window_ms))} " \
               f"{_AGG_WORDS[rule.aggregation]} {value:.1f} {unit}"
        standard = rule.source.split(":")[0].split(" (")[0]
        if state is AlertState.RESOLVED:
            message = f"{what} is back to {rule.clear:g} {unit} or below; alert resolved"
        else:
            message = f"{what} exceeds {band.threshold:g} {unit} ({standard}: {band.label})"
        return self._emit(slot, rule.id, station, state, AlertKind.THRESHOLD, band.severity, rule.metric, value,
                          band.threshold, rule.window, now, info, message)

    def _outlier_event(self, slot: AlertSlot, station: str, state: AlertState, row: Any, now: int,
                       info: StationInfo) -> AlertEvent:
        names = row.outlier_metrics if state is AlertState.OPEN else ""
        message = (f"statistical outlier: {names} beyond |z| bound (max |z| {float(row.zmax):.1f})"
                   if state is AlertState.OPEN else "readings back within the expected distribution")
        zmax = float(row.zmax) if not pd.isna(row.zmax) else None
        return self._emit(slot, OUTLIER_RULE_ID, station, state, AlertKind.OUTLIER, Severity.INFO,
                          names.split(",")[0] or None, zmax, None, None, now, info, message)

    def _emit(self, slot: AlertSlot, rule_id: str, station: str, state: AlertState, kind: AlertKind,
              severity: Severity, metric: str | None, value: float | None, threshold: float | None,
              window: str | None, now: int, info: StationInfo, message: str) -> AlertEvent:
        assert slot.alert_id is not None
        slot.events += 1
        location = Location(lat=info.lat, lon=info.lon) if info.lat is not None else None
        return AlertEvent(
            event_id=_uuid(f"{slot.alert_id}|{slot.events}|{state.value}"),
            alert_id=slot.alert_id, state=state, kind=kind, severity=severity, rule_id=rule_id,
            station_id=station, location=location, metric=metric,
            value=None if value is None or not math.isfinite(value) else round(value, 3),
            threshold=threshold, window=window, opened_at=_iso(slot.opened_ms), event_time=_iso(now),
            resolved_at=_iso(now) if state is AlertState.RESOLVED else None, message=message,
        )


def _uuid(text: str) -> str:
    return str(uuid.uuid5(_NS, text))
