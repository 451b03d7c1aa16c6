"""Station health: learned baselines, sensor faults, offline detection and exceedance forecasts.

:class:`StationHealth` combines the pure detectors (:mod:`baselines`, :mod:`faults`, :mod:`offline`,
:mod:`forecast`) for one station and serialises to one JSON-able document. :class:`HealthBucket` holds the documents
of all stations that hash to one state-store key, with their forecast series and the numbers of their fault tracks
as columns beside them (:mod:`citysense_scorer.health.forecast_history`,
:class:`~citysense_scorer.health.fault_batch.TrackTable`); :mod:`citysense_scorer.health.spark` keeps one bucket
document and its forecast history per key in Spark's state store.

Why buckets rather than one key per station: every group a Python stateful processor handles costs the JVM a fixed
overhead per micro-batch (Arrow round trips, state and timer calls over the state server), whatever its size, so
keyed by station that overhead grows with the fleet; keyed by a fixed number of buckets the cost per batch grows only
with the (cheap) Python work per reading.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from citysense_common.contract import AlertEvent
from citysense_common.registry import Metric, Registry

from citysense_scorer.health.baselines import Baseline, BaselineConfig
from citysense_scorer.health.fault_batch import TrackTable, observe_batch
from citysense_scorer.health.faults import FaultConfig, FaultDetector, MetricTrack, OpenFault
from citysense_scorer.health.forecast import (
    Buckets,
    ForecastConfig,
    Forecaster,
    ForecastTarget,
    OpenForecast,
    project,
    targets_from_rules,
)
from citysense_scorer.health.forecast_history import SLACK_BUCKETS, ForecastHistory
from citysense_scorer.health.offline import OfflineConfig, OfflineState, OfflineTracker
from citysense_scorer.health.settings import HealthSettings

BASELINE_Z_PREFIX = "station:"  # key of the baseline z in EnrichedReading.zscores (':' never occurs in metric names)


@dataclass(frozen=True)
class HealthContext:
    """Everything a station's health needs that is the same for every station (shipped to the workers)."""

    metrics: dict[str, Metric]
    profile: str
    faults: FaultConfig = field(default_factory=FaultConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    targets: tuple[ForecastTarget, ...] = ()
    buckets: int = 8

    @classmethod
    def build(cls, registry: Registry, profile: str, settings: HealthSettings, rules: object | None = None,
              ) -> HealthContext:
        forecast = ForecastConfig(horizon_s=settings.forecast_horizon_s)
        units = {name: m.unit for name, m in registry.metrics.items()}
        return cls(
            metrics=dict(registry.metrics), profile=profile,
            faults=FaultConfig(flatline_n=settings.fault_flatline_n, stuck_n=settings.fault_stuck_n,
                               spike_k=settings.fault_spike_k, pm_order_n=settings.fault_pm_order_n),
            baseline=BaselineConfig(half_life=settings.baseline_half_life, warmup=settings.baseline_warmup),
            offline=OfflineConfig(default_s=settings.offline_after_s, groups=tuple(settings.offline_groups.items())),
            forecast=forecast,
            targets=tuple(targets_from_rules(rules, forecast, units)) if rules is not None else (),
            buckets=settings.health_buckets,
        )


@dataclass(frozen=True)
class Row:
    ts_ms: int
    values: dict[str, float]
    lat: float | None = None
    lon: float | None = None


@dataclass
class RowResult:
    faults: list[str]
    baseline_z: dict[str, float]


@dataclass(frozen=True)
class BatchColumns:
    """A bucket's readings of one micro-batch as columns: rows grouped by station (``stations[i]`` owns rows
    ``starts[i]:ends[i]``, in event-time order), ``values`` rows x ``names`` (NaN: metric absent), lat/lon NaN when
    the reading has no location."""

    stations: list[str]
    starts: np.ndarray
    ends: np.ndarray
    ts_ms: np.ndarray
    values: np.ndarray
    names: list[str]
    lat: np.ndarray
    lon: np.ndarray


def row_result(names: list[str], faults: np.ndarray, zs: np.ndarray) -> RowResult:
    """One reading's verdict as :meth:`StationHealth.process` gives it (faults sorted, z rounded to 4 places)."""
    return RowResult(sorted(names[j] for j in np.flatnonzero(faults)),
                     {names[j]: round(float(zs[j]), 4) for j in np.flatnonzero(~np.isnan(zs))})


def _station_ends(batch: BatchColumns) -> tuple[np.ndarray, np.ndarray]:
    """Per station of the batch: its newest event time, and the row of its last reading with a location (-1: none),
    for all stations at once (a numpy call per station would cost more than the work it does)."""
    if not batch.stations:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # reduceat reads segment i as starts[i]:starts[i+1]: the stations' rows must be contiguous and in order
    if not (np.array_equal(batch.starts[1:], batch.ends[:-1]) and batch.starts[0] == 0
            and batch.ends[-1] == len(batch.ts_ms) and (batch.ends > batch.starts).all()):
        raise ValueError("a batch's rows must be grouped by station, contiguous and in station order")
    rows = np.arange(len(batch.ts_ms), dtype=np.int64)
    newest = np.maximum.reduceat(batch.ts_ms, batch.starts)
    located = np.maximum.reduceat(np.where(np.isnan(batch.lat), -1, rows), batch.starts)
    return newest, located


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class StationHealth:
    def __init__(self, station_id: str, ctx: HealthContext, in_bucket: bool = False) -> None:
        """``in_bucket``: a station of a :class:`HealthBucket`, whose columns hold its forecast series and the
        numeric state of its fault tracks (:class:`~citysense_scorer.health.fault_batch.TrackTable`); its tracks'
        objects then hold only their open alerts, and its document only those."""
        self.station_id = station_id
        self.ctx = ctx
        self.in_bucket = in_bucket
        self.faults = FaultDetector(station_id, ctx.metrics, ctx.profile, ctx.faults, ctx.baseline)
        self.offline = OfflineTracker(station_id, ctx.offline.after_ms(station_id))
        self.forecaster = (Forecaster(station_id, list(ctx.targets), ctx.forecast, keep_series=not in_bucket)
                           if ctx.targets else None)

    def process(self, rows: list[Row], now_ms: int) -> tuple[list[RowResult], list[AlertEvent], int]:
        """Rows in event-time order, arriving at processing time ``now_ms`` -> per-row results, events, timer."""
        results: list[RowResult] = []
        events: list[AlertEvent] = []
        newest = max(r.ts_ms for r in rows)
        last_loc = next(((r.lat, r.lon) for r in reversed(rows) if r.lat is not None), (None, None))
        offline_events, timer = self.offline.on_readings(now_ms, newest, *last_loc)
        events.extend(offline_events)  # the station is back before anything it says is judged
        for row in rows:
            # Readings may omit the location; events carry the station's last known one.
            lat, lon = (row.lat, row.lon) if row.lat is not None else (self.offline.state.lat, self.offline.state.lon)
            verdict = self.faults.observe(row.ts_ms, row.values, lat, lon)
            events.extend(verdict.events)
            results.append(RowResult(sorted(verdict.faults), {k: round(v, 4) for k, v in verdict.baseline_z.items()}))
            if self.forecaster is not None:
                self.forecaster.add(row.ts_ms, {k: v for k, v in row.values.items() if k not in verdict.faults})
        if self.forecaster is not None:  # at the station's last known location, as the bucket does
            events.extend(self.forecaster.evaluate(newest, self.offline.state.lat, self.offline.state.lon))
        return results, events, timer

    def on_timer(self, now_ms: int) -> list[AlertEvent]:
        return self.offline.on_timer(now_ms)

    # -- state document (written by HealthBucket.dump_json) ----------------------------------------------------------
    def to_doc(self) -> dict[str, Any]:
        """The station's state document as plain JSON values (what :meth:`from_doc` reads)."""
        return orjson.loads(self.to_json())

    def to_json(self) -> bytes:
        """The state document as JSON, written by orjson straight from the tracks, baselines, open faults and offline
        state (dataclasses, fields in declaration order; NaN becomes null), without building it as dicts in Python
        first, which would cost interpreter time on every micro-batch's critical path. A bucket keeps these bytes for
        each station it handled (:meth:`HealthBucket._keep`); a bucket's station (``in_bucket``) writes only its tracks'
        open alerts, the numbers being in the bucket's track table."""
        if self.in_bucket:  # the numbers are in the bucket's track table
            doc: dict[str, Any] = {"tracks": {name: {"open": t.open} for name, t in self.faults.tracks.items()
                                              if t.open}, "offline": self.offline.state}
        else:
            doc = {"tracks": self.faults.tracks, "pm_run": self.faults.pm_run, "offline": self.offline.state}
        if self.forecaster is not None:
            doc["forecast"] = {"open": self.forecaster.open, "last_eval_bucket": self.forecaster.last_eval_bucket}
            if self.forecaster.series:
                doc["forecast"]["series"] = {m: {str(b): c for b, c in s.data.items()}
                                             for m, s in self.forecaster.series.items()}
        return orjson.dumps(doc)

    @classmethod
    def from_doc(cls, station_id: str, ctx: HealthContext, doc: dict[str, Any] | None,
                 in_bucket: bool = False) -> StationHealth:
        health = cls(station_id, ctx, in_bucket)
        if not doc:
            return health
        for name, t in doc.get("tracks", {}).items():
            opened = {f: OpenFault(**o) for f, o in t["open"].items()}
            if "baseline" not in t:  # a bucket station's document: the numbers are in the bucket's table
                health.faults.tracks[name] = MetricTrack(open=opened)
                continue
            track = MetricTrack(**{**t, "baseline": Baseline(**t["baseline"]), "open": opened})
            if track.pending_jump_value is None:
                track.pending_jump_value = math.nan
            health.faults.tracks[name] = track
        health.faults.pm_run = doc.get("pm_run", 0)
        health.offline.state = OfflineState(**doc["offline"])
        fc = doc.get("forecast")
        if fc is not None and health.forecaster is not None:
            for metric, data in fc.get("series", {}).items():
                if metric in health.forecaster.series:
                    buckets: Buckets = health.forecaster.series[metric]
                    buckets.data = {int(b): list(c) for b, c in data.items()}
            health.forecaster.open = {r: OpenForecast(**o) for r, o in fc["open"].items()}
            health.forecaster.last_eval_bucket = fc["last_eval_bucket"]
        return health


def _offline_deadline(alert_id: str | None, last_arrival_ms: int, after_ms: int) -> int | None:
    return None if alert_id is not None or last_arrival_ms < 0 else last_arrival_ms + after_ms


class HealthBucket:
    """The health of every station hashed to one state-store key, as one document.

    Stations without readings in a micro-batch stay as plain dicts (only their offline deadline is looked at), so a
    batch costs JSON for the bucket plus detector work for the stations that did send. The document records the
    bucket count it was written under: after ``health_buckets`` changes, stations hash elsewhere, and a stale copy
    left here would report them offline while they are sending - such a document is dropped and learning restarts.
    """

    def __init__(self, ctx: HealthContext, text: str | bytes | None = None,
                 history: Iterable[tuple[int, str]] = ()) -> None:
        """``text``: the bucket document; ``history``: the stored forecast buckets (bucket number, value) that go
        with it (:mod:`citysense_scorer.health.forecast_history`)."""
        self.ctx = ctx
        doc = orjson.loads(text) if text else {}
        current = doc.get("buckets") == ctx.buckets
        self.stations: dict[str, dict[str, Any]] = doc.get("stations", {}) if current else {}
        self.history = _history(ctx)
        if current and "history" in doc:
            self.history.restore(doc["history"], history)
        else:  # a fresh bucket, or one written under another bucket count: its stored history goes too
            self.history.gone.update(b for b, _ in history)
        self.table = TrackTable.from_doc(list(ctx.metrics), doc.get("tracks") if current else None)
        for station, station_doc in self.stations.items():
            # documents written before the history had its own columns carry each station's series
            series = (station_doc.get("forecast") or {}).pop("series", None)
            if series:
                self.history.migrate(station, series)
        # and those written before the track table their tracks' numbers (the table grows once for all of them)
        numbered = {s: d for s, d in self.stations.items()
                    if any("baseline" in t for t in (d.get("tracks") or {}).values())}
        self.table.rows(list(numbered))
        for station, station_doc in numbered.items():
            tracks = station_doc["tracks"]
            self.table.load_tracks(station, tracks, station_doc.pop("pm_run", 0))
            station_doc["tracks"] = {name: {"open": t["open"]} for name, t in tracks.items() if t["open"]}
        self.history.prune()  # migrated series and stored entries may reach back further than the kept span
        # Stations handled since the bucket was read: their detector objects, so a bucket the worker keeps between
        # micro-batches (health.spark) does not rebuild them each batch, and their documents as JSON - bytes, which
        # the cyclic garbage collector does not walk (PySpark collects after every task, and a station document is
        # dozens of dicts). ``stations`` keeps the other stations' documents.
        self.live: dict[str, StationHealth] = {}
        self.encoded: dict[str, bytes] = {}

    def _health(self, station: str) -> StationHealth:
        health = self.live.get(station)
        if health is None:
            health = StationHealth.from_doc(station, self.ctx, self.stations.get(station), in_bucket=True)
        return health

    def _keep(self, station: str, health: StationHealth) -> None:
        self.live[station] = health
        self.encoded[station] = health.to_json()
        self.stations.pop(station, None)

    def process(self, readings: dict[str, list[Row]], now_ms: int,
                ) -> tuple[dict[str, list[RowResult]], list[AlertEvent]]:
        """Readings by station (each in event-time order) arriving at ``now_ms`` -> per-row results by station and
        the events, including offline alerts of the bucket's silent stations that are due. (Row objects in and out:
        :meth:`process_columns` does the work.)"""
        names = list(self.ctx.metrics)
        rows = [r for station_rows in readings.values() for r in station_rows]
        ends = np.cumsum([len(station_rows) for station_rows in readings.values()], dtype=np.int64)
        batch = BatchColumns(
            stations=list(readings), starts=ends - [len(r) for r in readings.values()], ends=ends,
            ts_ms=np.array([r.ts_ms for r in rows], np.int64),
            values=np.array([[_nan(r.values.get(m)) for m in names] for r in rows], np.float64).reshape(-1, len(names)),
            names=names, lat=np.array([_nan(r.lat) for r in rows], np.float64),
            lon=np.array([_nan(r.lon) for r in rows], np.float64))
        faults, zs, events = self.process_columns(batch, now_ms)
        results: dict[str, list[RowResult]] = {}
        for i, station in enumerate(batch.stations):
            results[station] = [row_result(names, faults[r], zs[r]) for r in range(batch.starts[i], batch.ends[i])]
        return results, events

    def process_columns(self, batch: BatchColumns, now_ms: int) -> tuple[np.ndarray, np.ndarray, list[AlertEvent]]:
        """The micro-batch as columns -> (faults: rows x metrics bool, baseline z: rows x metrics float, NaN where
        none, events). Events come station by station as :meth:`StationHealth.process` orders them (offline
        resolves, then each reading's fault events, then forecasts), then the offline alerts of silent stations.
        The fault detectors run column-wise (:mod:`citysense_scorer.health.fault_batch`); same results as
        :meth:`StationHealth.process` station by station."""
        healths = [self._health(s) for s in batch.stations]
        before: list[list[AlertEvent]] = []
        fallback: list[tuple[float | None, float | None]] = []
        newest, located = _station_ends(batch)
        for i, health in enumerate(healths):
            last = int(located[i])
            loc = (float(batch.lat[last]), _opt(batch.lon[last])) if last >= 0 else (None, None)
            events, _ = health.offline.on_readings(now_ms, int(newest[i]), *loc)
            before.append(events)
            fallback.append((health.offline.state.lat, health.offline.state.lon))
        station_of = np.repeat(np.arange(len(healths)), batch.ends - batch.starts)

        def locate(row: int) -> tuple[float | None, float | None]:
            # Readings may omit the location; events carry the station's last known one.
            lat = batch.lat[row]
            return (float(lat), _opt(batch.lon[row])) if not math.isnan(lat) else fallback[int(station_of[row])]

        verdict = observe_batch([h.faults for h in healths], batch.starts, batch.ends, batch.ts_ms, batch.values,
                                batch.names, locate, self.table, self.table.rows(batch.stations))
        forecasts = self._forecast(batch, healths, verdict.faults)
        events: list[AlertEvent] = []
        for i, health in enumerate(healths):
            a, b = int(batch.starts[i]), int(batch.ends[i])
            events.extend(before[i])
            for row in range(a, b):
                events.extend(verdict.events.get(row, ()))
            if (fc := health.forecaster) is not None and (figures := forecasts.get(i)) is not None:
                events.extend(fc.decide(int(newest[i]), figures, health.offline.state.lat, health.offline.state.lon))
            self._keep(batch.stations[i], health)
        events.extend(self.expire(now_ms, skip=set(batch.stations)))
        return verdict.faults, verdict.baseline_z, events

    def _forecast(self, batch: BatchColumns, healths: list[StationHealth], faults: np.ndarray,
                  ) -> dict[int, dict[str, tuple[float, int]]]:
        """Add the batch's fault-free values to the forecast history, then project every station due for it (once
        per 5-minute bucket of its event time) all at once: station index -> its figures per rule (see
        :meth:`Forecaster.decide`)."""
        if not self.ctx.targets or not len(batch.ts_ms):
            return {}
        history = self.history
        slots = np.array([history.slot(s) for s in batch.stations], np.int64)
        history.advance(int(batch.ts_ms.max()))
        present = [batch.names.index(m) if m in batch.names else -1 for m in history.metrics]
        values = np.stack([batch.values[:, j] if j >= 0 else np.full(len(batch.ts_ms), np.nan) for j in present], 1)
        usable = ~np.isnan(values) & ~np.stack(
            [faults[:, j] if j >= 0 else np.zeros(len(batch.ts_ms), bool) for j in present], 1)
        history.add(np.repeat(slots, batch.ends - batch.starts), batch.ts_ms, values, usable)
        newest = np.maximum.reduceat(batch.ts_ms, batch.starts) if len(batch.starts) else batch.ts_ms[:0]
        due = [i for i, h in enumerate(healths) if h.forecaster is not None and h.forecaster.due(int(newest[i]))]
        out: dict[int, dict[str, tuple[float, int]]] = {i: {} for i in due}
        last = newest[due] // history.width_ms
        for group in np.unique(last).tolist():  # stations whose newest reading falls in the same bucket
            members = [due[k] for k in np.flatnonzero(last == group)]
            # targets on the same metric and window (the rules' bands) read the same window: gather it once
            windows = {m: functools.cache(history.window(m, slots[members])) for m in history.metrics}
            for target in self.ctx.targets:
                mean, expected = project(windows[target.metric], len(members), group, history.width_ms, target,
                                         self.ctx.forecast)
                for i, m, e in zip(members, mean.tolist(), expected.tolist(), strict=True):
                    out[i][target.rule_id] = (m, e)
        return out

    def expire(self, now_ms: int, skip: Any = ()) -> list[AlertEvent]:
        """Offline alerts for the stations whose silence reached ``offline_after`` by ``now_ms``."""
        events: list[AlertEvent] = []
        # by station id: the same order however the bucket was kept (the sink orders all events by time and station)
        for station in sorted(s for s, deadline in self._deadlines() if deadline <= now_ms and s not in skip):
            health = self._health(station)
            events.extend(health.on_timer(now_ms))
            self._keep(station, health)
        return events

    def next_timer(self) -> int | None:
        """The earliest offline deadline in the bucket (None when no station can go offline)."""
        return min((deadline for _, deadline in self._deadlines()), default=None)

    def _deadlines(self) -> list[tuple[str, int]]:
        out = []
        for station, doc in self.stations.items():
            off = doc["offline"]
            deadline = _offline_deadline(off["alert_id"], off["last_arrival_ms"], self.ctx.offline.after_ms(station))
            if deadline is not None:
                out.append((station, deadline))
        for station, health in self.live.items():
            st = health.offline.state
            deadline = _offline_deadline(st.alert_id, st.last_arrival_ms, health.offline.after_ms)
            if deadline is not None:
                out.append((station, deadline))
        return out

    def _documents(self) -> dict[str, Any]:
        """Every station's document, by station id (one text for one state, however the bucket was kept)."""
        docs: dict[str, Any] = dict(self.stations)
        for station, text in self.encoded.items():
            docs[station] = orjson.Fragment(text)
        return {station: docs[station] for station in sorted(docs)}

    def dump_json(self) -> bytes:
        # orjson writes NaN as null: a station document's one float that can be NaN (a track's pending jump value) is
        # restored on load, and the track table's float arrays read null back as NaN.
        return orjson.dumps({"buckets": self.ctx.buckets, "stations": self._documents(),
                             "history": self.history.meta(), "tracks": self.table.to_doc()},
                            option=orjson.OPT_SERIALIZE_NUMPY)

    def history_changes(self) -> tuple[dict[int, str], list[int]]:
        """The forecast buckets to store and to delete since the last call (saved beside :meth:`dump_json`)."""
        return self.history.changes()


def _history(ctx: HealthContext) -> ForecastHistory:
    width = int(ctx.forecast.bucket_s * 1000)
    longest = max((t.window_ms for t in ctx.targets), default=0) // width
    return ForecastHistory(list(dict.fromkeys(t.metric for t in ctx.targets)), width, longest + 2 + SLACK_BUCKETS)
