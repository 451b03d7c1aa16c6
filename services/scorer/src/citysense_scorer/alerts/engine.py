"""Alert engine: windows, threshold rules, outliers and the alert lifecycle, across micro-batches.

Input per micro-batch is small: the batch's valid readings are first reduced (vectorised, pandas) to one row per
(station, series, bucket) plus one row per station, and only those aggregates touch the state. A *series* is
(metric, window), shared by every rule over the same metric and window; it keeps 60 buckets of window/60 each
(sum, count, max), so memory per station is bounded and the window edge is accurate to 1/60 of its length. The
series of all stations live in numpy arrays (:mod:`citysense_scorer.alerts.series_table`) and every rule is
evaluated for all touched stations at once; only the few (station, rule) pairs with a condition met, pending or open
go through the per-alert lifecycle in Python.

Determinism: :meth:`AlertEngine.apply` depends only on the state and the batch input - no wall clock. That is what
makes replay exact (see :mod:`citysense_scorer.alerts.engine_log`): ``alert_id`` and ``event_id`` are content hashes of
station, rule, opening time and the alert's event number.

Event time and watermark: the watermark is the largest event time seen minus ``watermark_ms``, where each reading's
event time counts only up to its ``clock_ms`` (the broker's clock when it arrived, see
:mod:`citysense_scorer.source.decode`). Readings behind it are *late*: stored and counted by the caller, but never fed
to aggregates, so they cannot reopen alerts. The cap is what keeps one station from silencing the others: a station
whose clock runs ahead (but inside the future tolerance) would otherwise drag the watermark ahead of every other
station's readings; capped, no reading moves it past the broker's clock, while a replay or a backlog (event times in the
past) moves it as it happened. Evaluation happens in event-time *slices* of ``eval_step_ms`` (default 5 s): once per
station per slice that has readings, at the station's newest event time in that slice, slices in time order. Live 1 Hz
data in micro-batches of a few seconds costs about one evaluation per station per batch, while a replayed file or a
backlog read in one micro-batch is evaluated as it happened - an episode that starts and ends inside one batch still
opens and resolves its alert, at the right event times.

Clock faults: a station whose readings are rejected as from the future (``ts`` beyond the broker's clock plus the
tolerance, see :mod:`citysense_scorer.source.decode`) gets a ``sensor_fault`` alert of its own (rule ``fault-clock``),
opened at the broker's clock of its first such reading and resolved at that of its first valid reading after the
last one from the future. Only "ahead" is a fault: a clock behind looks exactly like a station uploading what it
buffered during an outage, and such readings are stored (late) anyway.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.registry import Registry

from citysense_scorer.alerts.rules import BUCKETS_PER_WINDOW, DERIVED_METRICS, Rule, RuleSet
from citysense_scorer.alerts.series_table import SeriesTable, grow, runs

NAMESPACE = uuid.UUID("6f1c1d2e-8a51-4f0e-9a43-3c6a2b7d9e10")  # of every alert and event id (uuid5)
OUTLIER_RULE_ID = "outlier"
CLOCK_RULE_ID = "fault-clock"
CLOCK_COLUMNS = ["station_id", "ahead_first_ms", "ahead_last_ms", "skew_ms", "ok_ms"]
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
class AlertSlot:
    """Lifecycle state of one (station, rule)."""

    alert_id: str | None = None
    opened_ms: int = 0
    band: int = -1
    events: int = 0
    pending_since: int | None = None
    cooldown_until: int = -1

    @property
    def watched(self) -> bool:
        """Open or pending: the rule must see this station on every evaluation, met or not."""
        return self.alert_id is not None or self.pending_since is not None


@dataclass
class EngineState:
    version: int = -1  # last applied batch id
    max_event_ms: int = -1
    station_ids: list[str] = field(default_factory=list)  # row -> station id
    station_rows: dict[str, int] = field(default_factory=dict)
    lat: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per row: newest known location (NaN: none)
    lon: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seen_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # per row: newest event time
    series: dict[tuple[str, int], SeriesTable] = field(default_factory=dict)  # (metric, window_ms)
    slots: dict[tuple[str, str], AlertSlot] = field(default_factory=dict)  # (station, rule_id)
    watched: dict[str, set[int]] = field(default_factory=dict)  # rule id -> rows whose slot is open or pending

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Station rows of ``ids`` (unique), adding stations seen for the first time."""
        rows = self.station_rows
        for station in ids:
            if station not in rows:
                rows[station] = len(self.station_ids)
                self.station_ids.append(station)
        n = len(self.station_ids)
        self.lat = grow(self.lat, n, np.nan)
        self.lon = grow(self.lon, n, np.nan)
        self.seen_ms = grow(self.seen_ms, n, -1)
        for table in self.series.values():
            table.reserve(n)
        return np.fromiter((rows[station] for station in ids), dtype=np.int64, count=len(ids))

    def table(self, key: tuple[str, int], keep_max: bool) -> SeriesTable:
        """The series of (metric, window_ms), created on first use with a row for every known station."""
        table = self.series.get(key)
        if table is None:
            table = self.series[key] = SeriesTable.create(key[1], keep_max)
            table.reserve(len(self.station_ids))
        return table


@dataclass(frozen=True)
class BatchInput:
    """What one micro-batch contributes to the engine (small; also the replay log entry)."""

    # station_id, slice, metric, window_ms, bucket, sum, count, max, first_ms, last_ms, last_value
    series_aggs: pd.DataFrame
    # station_id, slice, last_ms, lat, lon, outlier (bool), zmax, outlier_metrics (str)[, bounded_ms: the newest
    # event time of the run with each reading's capped at its clock_ms; absent in entries logged before it existed
    # and when the readings had no clock_ms, then last_ms counts]
    stations: pd.DataFrame
    # per station of the batch's clock verdicts (see AlertEngine.reduce_clocks); None in entries logged before clock
    # faults existed
    clocks: pd.DataFrame | None = None


SERIES_AGG_COLUMNS = ["station_id", "slice", "metric", "window_ms", "bucket", "sum", "count", "max", "first_ms",
                      "last_ms", "last_value"]


def _reduce_runs(ufunc: np.ufunc, values: np.ndarray, first: np.ndarray) -> np.ndarray:
    return ufunc.reduceat(values, first) if len(first) else values[:0]


def _last_known(values: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per run: its last non-NaN value, NaN if it has none (pandas' ``GroupBy.last``)."""
    position = np.where(np.isnan(values), -1, np.arange(len(values)))
    at = _reduce_runs(np.maximum, position, first)  # the last known row of each run, or -1
    return np.where(at >= first, values[np.maximum(at, 0)], np.nan)


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
        """Valid, on-time readings (station_id, ts_ms, lat, lon, <metric columns>, n_outliers, outlier_names, zmax
        [, clock_ms]) -> BatchInput.

        One sort of the batch by (station, event time) serves every series: slices and buckets only grow with
        event time, so each (station, slice[, bucket]) group is a run of consecutive rows in that order, already in
        key order, and its numbers are numpy reductions over the runs, far cheaper on the way to the alert than a
        pandas groupby per series (tests/scorer/alerts/test_engine_reduce.py holds the groupby version as the
        reference)."""
        codes, uniques = pd.factorize(readings["station_id"], sort=True)  # code order = station id order
        ts = readings["ts_ms"].to_numpy(dtype=np.int64)
        order = np.lexsort((ts, codes))  # stable: readings with equal times keep their order
        codes, ts = codes[order], ts[order]
        slices = ts // self.eval_step_ms
        ids = np.asarray(uniques, dtype=object)
        frames = []
        for metric, window_ms in self.series_keys:
            if metric not in readings:
                continue
            values = readings[metric].to_numpy(dtype="float64")[order]
            keep = ~np.isnan(values)
            if not keep.any():
                continue
            v, c, t, s = values[keep], codes[keep], ts[keep], slices[keep]
            b = t // max(1, window_ms // BUCKETS_PER_WINDOW)
            first, stop = runs(c, s, b)
            last = stop - 1
            frames.append(pd.DataFrame({
                "station_id": ids[c[first]], "slice": s[first], "metric": metric, "window_ms": window_ms,
                "bucket": b[first], "sum": np.add.reduceat(v, first), "count": last - first + 1,
                "max": np.maximum.reduceat(v, first), "first_ms": t[first], "last_ms": t[last],
                "last_value": v[last]}))
        series_aggs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SERIES_AGG_COLUMNS)
        first, stop = runs(codes, slices)
        last = stop - 1
        n_outliers = readings["n_outliers"].to_numpy(dtype=np.int64)[order]
        stations = pd.DataFrame({
            "station_id": ids[codes[first]], "slice": slices[first], "last_ms": ts[last],
            "lat": _last_known(readings["lat"].to_numpy(dtype="float64")[order], first),
            "lon": _last_known(readings["lon"].to_numpy(dtype="float64")[order], first),
            "outlier": _reduce_runs(np.add, n_outliers, first) > 0,
            "zmax": _reduce_runs(np.fmax, readings["zmax"].to_numpy(dtype="float64")[order], first),  # NaN-skipping
        })
        # Outlier names: a Python join per group, so only over the (few) readings that have any.
        named: dict[int, set[str]] = {}
        flagged = np.flatnonzero(n_outliers > 0)
        texts = readings["outlier_names"].to_numpy(dtype=object)[order[flagged]]
        for group, text in zip(np.searchsorted(first, flagged, side="right") - 1, texts, strict=True):
            named.setdefault(int(group), set()).update(name for name in text.split(",") if name)
        metrics = [""] * len(first)
        for group, found in named.items():
            metrics[group] = ",".join(sorted(found))
        stations["outlier_metrics"] = pd.Series(metrics, dtype=object)
        if "clock_ms" in readings:
            bounded = np.minimum(ts, readings["clock_ms"].to_numpy(dtype=np.int64)[order])
            stations["bounded_ms"] = _reduce_runs(np.maximum, bounded, first)
        return BatchInput(series_aggs[SERIES_AGG_COLUMNS], stations)

    def reduce_clocks(self, future: pd.DataFrame, valid: pd.DataFrame) -> pd.DataFrame:
        """The batch's clock verdicts, one row per station that has readings rejected as from the future
        (``future``: station_id, ts_ms, clock_ms) or an open clock fault and valid readings (``valid``: station_id
        [, clock_ms], late or not): ``ahead_first_ms``/``ahead_last_ms``, the clock of its first and last reading
        from the future (-1: none), ``skew_ms``, how far its ``ts`` ran ahead at most, and ``ok_ms``, the clock of
        its first valid reading after the last one from the future (-1: none). Sorted by station."""
        watched = self.state.watched.get(CLOCK_RULE_ID) or ()
        names = set(future["station_id"]) if len(future) else set()
        names.update(self.state.station_ids[row] for row in watched)
        if not names:
            return pd.DataFrame({c: pd.Series(dtype=object if c == "station_id" else np.int64) for c in CLOCK_COLUMNS})
        ahead = pd.DataFrame({"station_id": future["station_id"].astype(object),
                              "clock_ms": future["clock_ms"].astype(np.int64),
                              "skew_ms": (future["ts_ms"] - future["clock_ms"]).astype(np.int64)}) \
            .groupby("station_id").agg(ahead_first_ms=("clock_ms", "min"), ahead_last_ms=("clock_ms", "max"),
                                       skew_ms=("skew_ms", "max")) if len(future) else None
        ok = valid.loc[valid["station_id"].isin(names)] if len(valid) else valid
        ok = pd.DataFrame({"station_id": ok["station_id"].astype(object) if len(ok) else [],
                           "clock_ms": (ok["clock_ms"] if "clock_ms" in ok else ok["ts_ms"]).astype(np.int64)
                           if len(ok) else []})
        out = pd.DataFrame(index=pd.Index(sorted(names), name="station_id"))
        out = out.join(ahead) if ahead is not None else out.assign(ahead_first_ms=-1, ahead_last_ms=-1, skew_ms=0)
        out = out.fillna({"ahead_first_ms": -1, "ahead_last_ms": -1, "skew_ms": 0}).astype(np.int64)
        after = ok["clock_ms"].to_numpy(dtype=np.int64) > out["ahead_last_ms"].reindex(ok["station_id"]).to_numpy()
        first_ok = ok[after].groupby("station_id")["clock_ms"].min()
        out["ok_ms"] = first_ok.reindex(out.index).fillna(-1).astype(np.int64)
        # a station watched only for resolving, with nothing new to say, needs no row
        out = out[(out["ahead_first_ms"] >= 0) | (out["ok_ms"] >= 0)]
        return out.reset_index()[CLOCK_COLUMNS]

    # -- state transition ----------------------------------------------------------------------------------------
    def apply(self, batch_id: int, data: BatchInput) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        series_aggs, stations = data.series_aggs, data.stations
        if len(stations):
            if "slice" not in stations:  # a log entry written before slices existed: one slice
                stations = stations.assign(slice=0)
                series_aggs = series_aggs.assign(slice=0)
            if "bounded_ms" not in stations:  # no clocks: event time alone moves the watermark
                stations = stations.assign(bounded_ms=stations["last_ms"])
            # Columns to numpy once per batch; each slice is then a range of rows, not a pandas selection.
            ids = stations["station_id"].to_numpy(dtype=object)
            names = pd.Index(pd.unique(ids))
            known = self.state.rows_of(names.to_numpy(dtype=object))
            by_slice = _Ranges(stations["slice"].to_numpy(dtype=np.int64))
            cols = {name: by_slice.sorted(stations[name].to_numpy(dtype=kind)) for name, kind in _STATION_COLUMNS}
            cols["row"] = by_slice.sorted(known[names.get_indexer(ids)])
            aggs = _SeriesRows(series_aggs, known[names.get_indexer(series_aggs["station_id"])]) \
                if len(series_aggs) else None
            for number, at in by_slice:
                part = {name: values[at] for name, values in cols.items()}
                events.extend(self._apply_slice(aggs.of_slice(number) if aggs else {}, part))
        if data.clocks is not None and len(data.clocks):
            events.extend(self._apply_clocks(data.clocks))
        self.state.version = batch_id
        return events

    def _apply_clocks(self, clocks: pd.DataFrame) -> list[AlertEvent]:
        ids = clocks["station_id"].to_numpy(dtype=object)
        rows = self.state.rows_of(ids)
        events: list[AlertEvent] = []
        for row, station, first, skew, ok in zip(
                rows.tolist(), ids.tolist(), clocks["ahead_first_ms"].tolist(), clocks["skew_ms"].tolist(),
                clocks["ok_ms"].tolist(), strict=True):
            slot = self.state.slots.setdefault((station, CLOCK_RULE_ID), AlertSlot())
            if first >= 0 and slot.alert_id is None:
                slot.alert_id = _uuid(f"{station}|{CLOCK_RULE_ID}|{first}")
                slot.opened_ms, slot.band, slot.events = first, 0, 0
                message = f"station clock runs {_duration_text(skew)} ahead of the broker's: its readings are " \
                          "rejected as from the future (check the station's or gateway's time sync)"
                events.append(self._clock_event(slot, row, station, AlertState.OPEN, skew, first, message))
            if ok >= 0 and slot.alert_id is not None:
                events.append(self._clock_event(slot, row, station, AlertState.RESOLVED, None, ok,
                                                "station clock back in time: its readings are accepted again"))
                slot = self.state.slots[(station, CLOCK_RULE_ID)] = AlertSlot()
            self._watch(CLOCK_RULE_ID, row, slot)
        return events

    def _apply_slice(self, series: dict[tuple[str, int], dict[str, np.ndarray]],
                     stations: dict[str, np.ndarray]) -> list[AlertEvent]:
        st = self.state
        rows, last = stations["row"], stations["last_ms"]
        newer = last >= st.seen_ms[rows]
        st.seen_ms[rows] = np.where(newer, last, st.seen_ms[rows])
        moved = newer & ~np.isnan(stations["lat"])
        st.lat[rows[moved]], st.lon[rows[moved]] = stations["lat"][moved], stations["lon"][moved]
        st.max_event_ms = max(st.max_event_ms, int(stations["bounded_ms"].max()))
        position = np.full(len(st.station_ids), -1, dtype=np.int64)  # station row -> its place in this slice
        position[rows] = np.arange(len(rows))

        # (position, rule order, rule, station row, value, now, since): the pairs the lifecycle has to look at,
        # run in the order of a station-by-station evaluation, the order events come out in.
        steps: list[tuple[int, int, Rule | None, int, float, int, int]] = []
        for key, part in series.items():
            table = st.table(key, self.keeps_max(key))
            update = table.add(part["row"], part["bucket"], part["sum"], part["count"], part["max"],
                               part["first_ms"], part["last_ms"], part["last_value"])
            values: dict[str, np.ndarray] = {}
            for order, rule in enumerate(self.rules.rules):
                if rule.series != key:
                    continue
                if rule.aggregation not in values:
                    values[rule.aggregation] = table.aggregate(rule.aggregation, update.rows)
                value = values[rule.aggregation]
                usable = ~np.isnan(value)
                if not rule.partial:
                    usable &= table.complete(update.rows, rule.window_ms)  # not a complete window yet
                look = usable & ((self._bands(rule, value) >= 0) | self._watched(rule.id, update.rows))
                for i in np.flatnonzero(look):
                    row = int(update.rows[i])
                    steps.append((int(position[row]), order, rule, row, float(value[i]), int(table.last_ms[row]),
                                  int(update.since_ms[i])))
        outlier = stations["outlier"]
        look = outlier | self._watched(OUTLIER_RULE_ID, rows)
        after_rules = len(self.rules.rules)
        steps += [(int(i), after_rules, None, int(rows[i]), 0.0, 0, 0) for i in np.flatnonzero(look)]
        steps.sort(key=lambda step: (step[0], step[1]))

        events: list[AlertEvent] = []
        names, zmax = stations["outlier_metrics"], stations["zmax"]
        for pos, _, rule, row, value, now, since in steps:
            if rule is None:
                events.extend(self._outlier_step(row, bool(outlier[pos]), int(last[pos]), names[pos], zmax[pos]))
            else:
                events.extend(self._step(row, rule, value, now, since))
        return events

    def keeps_max(self, key: tuple[str, int]) -> bool:
        """Whether a rule needs the per-bucket maximum of this series (else it is not stored)."""
        return any(r.aggregation == "max" for r in self.rules.rules if r.series == key)

    def _watched(self, rule_id: str, rows: np.ndarray) -> np.ndarray:
        watched = self.state.watched.get(rule_id)
        if not watched:
            return np.zeros(len(rows), dtype=bool)
        return np.isin(rows, np.fromiter(watched, dtype=np.int64, count=len(watched)))

    @staticmethod
    def _bands(rule: Rule, value: np.ndarray) -> np.ndarray:
        """Per value: index of the highest band reached, -1 below the lowest (or NaN)."""
        levels = np.array([b.threshold for b in rule.bands])
        with np.errstate(invalid="ignore"):
            reached = value[:, None] >= levels if rule.comparator == ">=" else value[:, None] > levels
        return reached.sum(axis=1) - 1

    def _step(self, row: int, rule: Rule, value: float, now: int, since: int) -> list[AlertEvent]:
        # One evaluation per slice: a condition first seen in this slice counts as holding since the slice's first
        # reading of the series (`since`), so `for` is measured in event time, not in batches.
        station = self.state.station_ids[row]
        slot = self.state.slots.setdefault((station, rule.id), AlertSlot())
        events = self._transition(slot, row, station, rule, value, now, since)
        self._watch(rule.id, row, self.state.slots[(station, rule.id)])  # a resolve replaces the slot
        return events

    def _watch(self, rule_id: str, row: int, slot: AlertSlot) -> None:
        watched = self.state.watched.setdefault(rule_id, set())
        if slot.watched:
            watched.add(row)
        else:
            watched.discard(row)

    def _transition(self, slot: AlertSlot, row: int, station: str, rule: Rule, value: float, now: int,
                    since: int) -> list[AlertEvent]:
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
            return [self._event(slot, rule, station, AlertState.OPEN, value, now, row)]
        if value <= rule.clear:
            event = self._event(slot, rule, station, AlertState.RESOLVED, value, now, row)
            self.state.slots[(station, rule.id)] = AlertSlot(cooldown_until=now + rule.cooldown_ms)
            return [event]
        band = max(band, 0)  # between clear and the lowest band: hysteresis keeps the alert in its lowest band
        if band != slot.band:
            slot.band = band
            return [self._event(slot, rule, station, AlertState.UPDATE, value, now, row)]
        return []

    def _outlier_step(self, row: int, outlier: bool, now: int, names: str, zmax: float) -> list[AlertEvent]:
        """Outliers raise at most one info alert per station per cooldown; it resolves on the next clean batch."""
        station = self.state.station_ids[row]
        slot = self.state.slots.setdefault((station, OUTLIER_RULE_ID), AlertSlot())
        events = []
        if outlier:
            if slot.alert_id is None and now >= slot.cooldown_until:
                slot.alert_id = _uuid(f"{station}|{OUTLIER_RULE_ID}|{now}")
                slot.opened_ms, slot.band, slot.events = now, 0, 0
                message = f"statistical outlier: {names} beyond |z| bound (max |z| {float(zmax):.1f})"
                events.append(self._outlier_event(slot, row, station, AlertState.OPEN, names, zmax, now, message))
        elif slot.alert_id is not None:
            events.append(self._outlier_event(slot, row, station, AlertState.RESOLVED, "", zmax, now,
                                              "readings back within the expected distribution"))
            slot = self.state.slots[(station, OUTLIER_RULE_ID)] = AlertSlot(
                cooldown_until=slot.opened_ms + self.outlier_cooldown_ms)
        self._watch(OUTLIER_RULE_ID, row, slot)
        return events

    # -- events ----------------------------------------------------------------------------------------------------
    def _event(self, slot: AlertSlot, rule: Rule, station: str, state: AlertState, value: float, now: int,
               row: int) -> AlertEvent:
        band = rule.bands[max(slot.band, 0)]
        subject, unit, standard = threshold_wording(rule, self.registry)
        what = f"{subject} {value:.1f} {unit}"
        if state is AlertState.RESOLVED:
            message = f"{what} is back to {rule.clear:g} {unit} or below; alert resolved"
        else:
            message = f"{what} exceeds {band.threshold:g} {unit} ({standard}: {band.label})"
        return self._emit(slot, rule.id, station, state, AlertKind.THRESHOLD, band.severity, rule.metric, value,
                          band.threshold, rule.window, now, row, message)

    def _outlier_event(self, slot: AlertSlot, row: int, station: str, state: AlertState, names: str, zmax: float,
                       now: int, message: str) -> AlertEvent:
        return self._emit(slot, OUTLIER_RULE_ID, station, state, AlertKind.OUTLIER, Severity.INFO,
                          names.split(",")[0] or None, None if math.isnan(zmax) else float(zmax), None, None, now, row,
                          message)

    def _clock_event(self, slot: AlertSlot, row: int, station: str, state: AlertState, skew_ms: int | None,
                     now: int, message: str) -> AlertEvent:
        return self._emit(slot, CLOCK_RULE_ID, station, state, AlertKind.SENSOR_FAULT, Severity.WARNING, None,
                          None if skew_ms is None else skew_ms / 1000, None, None, now, row, message)

    def _emit(self, slot: AlertSlot, rule_id: str, station: str, state: AlertState, kind: AlertKind,
              severity: Severity, metric: str | None, value: float | None, threshold: float | None,
              window: str | None, now: int, row: int, message: str) -> AlertEvent:
        assert slot.alert_id is not None
        slot.events += 1
        lat, lon = float(self.state.lat[row]), float(self.state.lon[row])
        location = None if math.isnan(lat) else Location(lat=lat, lon=lon)
        return AlertEvent(
            event_id=_uuid(f"{slot.alert_id}|{slot.events}|{state.value}"),
            alert_id=slot.alert_id, state=state, kind=kind, severity=severity, rule_id=rule_id,
            station_id=station, location=location, metric=metric,
            value=None if value is None or not math.isfinite(value) else round(value, 3),
            threshold=threshold, window=window, opened_at=_iso(slot.opened_ms), event_time=_iso(now),
            resolved_at=_iso(now) if state is AlertState.RESOLVED else None, message=message,
        )


def threshold_wording(rule: Rule, registry: Registry) -> tuple[str, str, str]:
    """The fixed words of a threshold alert's message: subject ("PM2.5 1-minute mean"), unit and the standard's
    short name. Both alert paths word their messages with it."""
    unit = DERIVED_METRICS.get(rule.metric) or (
        registry.metrics[rule.metric].unit if rule.metric in registry.metrics else "")
    label = _METRIC_LABELS.get(rule.metric, rule.metric)
    window = _WINDOW_WORDS.get(rule.window_ms, _window_text(rule.window_ms))
    subject = f"{label} {window} {_AGG_WORDS[rule.aggregation]}"
    return subject, unit, rule.source.split(":")[0].split(" (")[0]


def _duration_text(ms: int) -> str:
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.1f} h"
    if ms >= 60_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 1000:.0f} s"


def _uuid(text: str) -> str:
    return str(uuid.uuid5(NAMESPACE, text))


_STATION_COLUMNS = (("last_ms", np.int64), ("bounded_ms", np.int64), ("lat", np.float64), ("lon", np.float64),
                    ("outlier", bool), ("zmax", np.float64), ("outlier_metrics", object))
_AGG_COLUMNS = (("bucket", np.int64), ("sum", np.float64), ("count", np.int64), ("max", np.float64),
                ("first_ms", np.int64), ("last_ms", np.int64), ("last_value", np.float64))


class _Ranges:
    """Rows grouped by slice number (stable: rows keep their order inside a slice), slices ascending."""

    def __init__(self, slices: np.ndarray) -> None:
        self.order = np.argsort(slices, kind="stable")
        ordered = slices[self.order]
        starts, ends = runs(ordered)
        self.slices = {int(ordered[a]): slice(int(a), int(b)) for a, b in zip(starts, ends, strict=True)}

    def sorted(self, values: np.ndarray) -> np.ndarray:
        return values[self.order]

    def __iter__(self):  # noqa: ANN204 - (slice number, row range)
        return iter(self.slices.items())


class _SeriesRows:
    """A batch's series aggregates as numpy columns, by slice and then by series (metric, window)."""

    def __init__(self, aggs: pd.DataFrame, rows: np.ndarray) -> None:
        grouped = aggs.groupby(["metric", "window_ms"], sort=True)
        self.keys = [(str(m), int(w)) for m, w in grouped.size().index]
        series = grouped.ngroup().to_numpy()
        slices = aggs["slice"].to_numpy(dtype=np.int64)
        order = np.lexsort((series, slices))
        self.series, self.slices = series[order], slices[order]
        self.cols = {name: aggs[name].to_numpy(dtype=kind)[order] for name, kind in _AGG_COLUMNS}
        self.cols["row"] = rows[order]

    def of_slice(self, number: int) -> dict[tuple[str, int], dict[str, np.ndarray]]:
        a, b = np.searchsorted(self.slices, [number, number + 1])
        out = {}
        while a < b:
            code = self.series[a]
            end = a + int(np.searchsorted(self.series[a:b], code, side="right"))
            out[self.keys[code]] = {name: values[a:end] for name, values in self.cols.items()}
            a = end
        return out

