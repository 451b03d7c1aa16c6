"""The sensor-fault detectors of :mod:`faults`, run column-wise over a micro-batch: every station of a bucket at once.

:meth:`FaultDetector.observe <citysense_scorer.health.faults.FaultDetector.observe>` is the reference: one reading of
one station in plain Python, interpreter work for every value, which would be most of the health operator's time. Here
the same state machines step through the batch by reading index: step ``k`` takes the k-th reading of every station that
has one, as numpy arrays (stations x metrics), so the interpreter's work is per step, not per value. Only the rare cells
where a fault holds or is open go through the reference's own ``FaultDetector._lifecycle`` (alert ids, messages and
events are never written twice).

The arithmetic is the reference's, operation for operation in the same order on IEEE doubles, so flags, z-scores,
learned baselines and events are identical to it (tests/scorer/health/test_fault_batch.py runs both on random and
adversarial sequences and compares everything).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from citysense_common.contract import AlertEvent

from citysense_scorer.health.faults import (
    FLATLINE,
    PM_ORDER,
    PM_ORDER_METRIC,
    SPIKE,
    STUCK,
    FaultDetector,
    MetricTrack,
    ReadingVerdict,
)

_PER_METRIC = (FLATLINE, STUCK, SPIKE)  # the reference's order of conditions per metric


@dataclass
class BatchVerdict:
    faults: np.ndarray  # (rows, metrics) bool: the metric is faulty in that reading
    baseline_z: np.ndarray  # (rows, metrics) float64: z against the station's baseline, NaN while it is not warm
    events: dict[int, list[AlertEvent]]  # row -> its fault events, in the reference's order


class _Tracks:
    """The numeric state of every (station, metric) track of the batch, as arrays (stations x metrics); built from
    and written back to the detectors' :class:`MetricTrack` objects field by field with list comprehensions (numpy
    item access per cell costs more than the detection itself)."""

    def __init__(self, detectors: Sequence[FaultDetector], names: Sequence[str]) -> None:
        shape = (len(detectors), len(names))
        cells = [det.tracks.get(name) for det in detectors for name in names]
        self.has = np.array([t is not None for t in cells], bool).reshape(shape)
        tracks = [t for t in cells if t is not None]
        where = np.flatnonzero(self.has.ravel())

        def column(values: list, fill: float, dtype: type) -> np.ndarray:
            out = np.full(shape[0] * shape[1], fill, dtype)
            out[where] = values
            return out.reshape(shape)

        nan = math.nan
        self.last = column([nan if t.last is None else t.last for t in tracks], nan, np.float64)
        self.run = column([t.run for t in tracks], 0, np.int64)
        self.limit_run = column([t.limit_run for t in tracks], 0, np.int64)
        self.jump_from = column([nan if t.pending_jump_from is None else t.pending_jump_from for t in tracks], nan,
                                np.float64)
        self.jump_ms = column([t.pending_jump_ms for t in tracks], 0, np.int64)
        self.jump_value = column([t.pending_jump_value for t in tracks], nan, np.float64)
        self.n = column([t.baseline.n for t in tracks], 0, np.int64)
        self.mean = column([t.baseline.mean for t in tracks], 0.0, np.float64)
        self.var = column([t.baseline.var for t in tracks], 0.0, np.float64)
        self.open = np.zeros((*shape, len(_PER_METRIC)), bool)
        for i in (i for i, t in enumerate(tracks) if t.open):
            s, j = divmod(int(where[i]), shape[1])
            self.open[s, j] = [fault in tracks[i].open for fault in _PER_METRIC]
        self.pm_run = np.array([d.pm_run for d in detectors], np.int64)
        pm = [d.tracks.get(PM_ORDER_METRIC) for d in detectors]
        self.pm_open = np.array([t is not None and PM_ORDER in t.open for t in pm], bool)

    def store(self, detectors: Sequence[FaultDetector], names: Sequence[str]) -> None:
        where = np.flatnonzero(self.has.ravel())
        width = len(names)
        tracks = [detectors[i // width].tracks[names[i % width]] for i in where.tolist()]
        fields = (self.last, self.run, self.limit_run, self.jump_from, self.jump_ms, self.jump_value, self.n,
                  self.mean, self.var)
        for t, last, run, limit_run, jump_from, jump_ms, jump_value, n, mean, var in zip(
                tracks, *(f.ravel()[where].tolist() for f in fields), strict=True):
            t.last = None if last != last else last  # NaN: no value yet
            t.run, t.limit_run = run, limit_run
            t.pending_jump_from = None if jump_from != jump_from else jump_from
            t.pending_jump_ms, t.pending_jump_value = jump_ms, jump_value
            t.baseline.n, t.baseline.mean, t.baseline.var = n, mean, var
        for det, pm_run in zip(detectors, self.pm_run.tolist(), strict=True):
            det.pm_run = pm_run


# TrackTable's arrays: the numeric fields of MetricTrack (and its baseline), their dtype and a new track's value.
_FIELDS: dict[str, tuple[type, float]] = {
    "last": (np.float64, math.nan), "run": (np.int64, 0), "limit_run": (np.int64, 0),
    "jump_from": (np.float64, math.nan), "jump_ms": (np.int64, 0), "jump_value": (np.float64, math.nan),
    "n": (np.int64, 0), "mean": (np.float64, 0.0), "var": (np.float64, 0.0)}


class TrackTable:
    """The numeric fault-track state of every station of a health bucket, kept as arrays (stations x metrics)
    across micro-batches: :func:`observe_batch` gathers the batch's rows from it and scatters them back, instead of
    building arrays from :class:`MetricTrack` objects and writing every field back each batch, which would cost
    more than the detection itself. The tracks' objects then only hold their open alerts.

    ``stations`` lists the stations in row order; ``names`` are the metrics (columns). Serialised as one JSON object
    of arrays (:meth:`to_doc`, :meth:`from_doc`; orjson writes a float64 shortest-round-trip, so it reads back
    exactly; NaN as null)."""

    def __init__(self, names: Sequence[str]) -> None:  # noqa: D107 - a new table holds no station
        self.names = list(names)
        self.stations: list[str] = []
        self.row_of: dict[str, int] = {}
        for name, blank in self._blank(0).items():
            setattr(self, name, blank)

    def _blank(self, stations: int) -> dict[str, np.ndarray]:
        """Every array of the table for ``stations`` new stations: no tracks, nothing open."""
        width = len(self.names)
        return {"has": np.zeros((stations, width), bool),
                **{name: np.full((stations, width), fill, dtype) for name, (dtype, fill) in _FIELDS.items()},
                "open": np.zeros((stations, width, len(_PER_METRIC)), bool),
                "pm_run": np.zeros(stations, np.int64), "pm_open": np.zeros(stations, bool)}

    def rows(self, stations: Sequence[str]) -> np.ndarray:
        """Row of each station, adding the ones the table does not hold yet (no tracks, nothing open)."""
        new = [s for s in dict.fromkeys(stations) if s not in self.row_of]
        if new:
            for s in new:
                self.row_of[s] = len(self.stations)
                self.stations.append(s)
            for name, blank in self._blank(len(new)).items():
                setattr(self, name, np.concatenate((getattr(self, name), blank)))
        return np.array([self.row_of[s] for s in stations], np.int64)

    def gather(self, rows: np.ndarray, names: Sequence[str]) -> _Tracks:
        """The state of the stations at ``rows`` for the metrics ``names`` (copies, in that order), for
        :func:`observe_batch`."""
        at = np.ix_(rows, self._columns(names))
        out = _Tracks.__new__(_Tracks)
        for name in ("has", *_FIELDS, "open"):
            setattr(out, name, getattr(self, name)[at])
        out.pm_run, out.pm_open = self.pm_run[rows], self.pm_open[rows]
        return out

    def scatter(self, rows: np.ndarray, names: Sequence[str], tracks: _Tracks) -> None:
        """Write back what :meth:`gather` took, once the batch has advanced it."""
        at = np.ix_(rows, self._columns(names))
        for name in ("has", *_FIELDS, "open"):
            getattr(self, name)[at] = getattr(tracks, name)
        self.pm_run[rows], self.pm_open[rows] = tracks.pm_run, tracks.pm_open

    def _columns(self, names: Sequence[str]) -> list[int]:
        try:
            return [self.names.index(n) for n in names]
        except ValueError as err:
            raise ValueError(f"metrics {list(names)} are not all in the track table's {self.names}") from err

    def load_tracks(self, station: str, tracks: dict[str, dict], pm_run: int) -> None:
        """Take one station's numeric state from its tracks as :class:`MetricTrack` documents (the per-station
        layout written before the table; metrics the table does not have are left out). Many stations: add their
        rows first (:meth:`rows`), which grows the arrays once."""
        row = int(self.rows([station])[0])
        for name, t in tracks.items():
            if name not in self.names:
                continue
            j = self.names.index(name)
            self.has[row, j] = True
            self.last[row, j] = math.nan if t["last"] is None else t["last"]
            self.run[row, j], self.limit_run[row, j] = t["run"], t["limit_run"]
            self.jump_from[row, j] = math.nan if t["pending_jump_from"] is None else t["pending_jump_from"]
            self.jump_ms[row, j] = t["pending_jump_ms"]
            self.jump_value[row, j] = math.nan if t["pending_jump_value"] is None else t["pending_jump_value"]
            base = t["baseline"]
            self.n[row, j], self.mean[row, j], self.var[row, j] = base["n"], base["mean"], base["var"]
            self.open[row, j] = [fault in t["open"] for fault in _PER_METRIC]
        self.pm_run[row] = pm_run
        self.pm_open[row] = PM_ORDER in tracks.get(PM_ORDER_METRIC, {}).get("open", {})

    def to_doc(self) -> dict[str, Any]:
        """JSON-able (orjson with OPT_SERIALIZE_NUMPY): the arrays by name, with the stations and metrics."""
        return {"stations": self.stations, "metrics": self.names, "has": self.has,
                **{name: getattr(self, name) for name in _FIELDS}, "open": self.open, "pm_run": self.pm_run,
                "pm_open": self.pm_open}

    @classmethod
    def from_doc(cls, names: Sequence[str], doc: dict[str, Any] | None) -> TrackTable:
        """The table of :meth:`to_doc` for the metrics ``names`` (a metric the document lacks starts without
        tracks; one it has beyond ``names`` is left out)."""
        table = cls(names)
        if not doc or not doc["stations"]:
            return table
        table.rows(doc["stations"])
        cols = [(k, doc["metrics"].index(m)) for k, m in enumerate(table.names) if m in doc["metrics"]]
        mine, theirs = [k for k, _ in cols], [j for _, j in cols]
        if mine:
            table.has[:, mine] = np.array(doc["has"], bool).reshape(len(table.stations), -1)[:, theirs]
            for name, (dtype, _) in _FIELDS.items():
                # null (NaN written by orjson) becomes NaN again in a float64 array
                table_values = np.array(doc[name], dtype)
                getattr(table, name)[:, mine] = table_values.reshape(len(table.stations), -1)[:, theirs]
            opened = np.array(doc["open"], bool).reshape(len(table.stations), -1, len(_PER_METRIC))
            table.open[:, mine] = opened[:, theirs]
        table.pm_run[:] = doc["pm_run"]
        table.pm_open[:] = doc["pm_open"]
        return table


def observe_batch(detectors: Sequence[FaultDetector], starts: np.ndarray, ends: np.ndarray, ts_ms: np.ndarray,
                  values: np.ndarray, names: Sequence[str],
                  locate: Callable[[int], tuple[float | None, float | None]],
                  table: TrackTable | None = None, table_rows: np.ndarray | None = None) -> BatchVerdict:
    """Feed ``detectors[i]`` the rows ``starts[i]:ends[i]`` (each station's rows in event-time order).

    ``values`` is (rows, metrics) in ``names`` order, NaN where a reading lacks the metric; ``names`` must be metrics
    the detectors know. ``locate(row)`` gives the location an event raised at that row carries. The detectors'
    state is advanced exactly as ``observe`` row by row would have - in their :class:`MetricTrack` objects, or, with
    a ``table`` (holding every metric of ``names``), in its row ``table_rows[i]`` for ``detectors[i]``, the objects then
    holding only the open alerts."""
    rows_n, width = values.shape
    verdict = BatchVerdict(np.zeros((rows_n, width), bool), np.full((rows_n, width), np.nan), {})
    if not detectors or not rows_n:
        return verdict
    ref = detectors[0]
    cfg, bcfg = ref.config, ref.baseline_config
    registry_std = np.array([ref._registry_std(m) for m in names])
    floor = bcfg.min_std_fraction * registry_std
    varies = np.array([ref.metrics[m].varies for m in names])
    limits = [ref._limits[m] for m in names]
    lim_a = np.array([lim[0] if len(lim) > 0 else np.nan for lim in limits])
    lim_b = np.array([lim[1] if len(lim) > 1 else np.nan for lim in limits])
    alpha = bcfg.alpha
    has_condition = np.stack((varies, np.ones_like(varies), np.ones_like(varies)), axis=1)  # flatline: varying only
    j25 = names.index("pm2_5") if "pm2_5" in names else None
    j10 = names.index("pm10") if "pm10" in names else None
    st = table.gather(table_rows, names) if table is not None else _Tracks(detectors, names)
    lengths = ends - starts
    for k in range(int(lengths.max())):
        act = np.flatnonzero(lengths > k)  # stations with a k-th reading
        rows = starts[act] + k
        v = values[rows]
        valid = np.isfinite(v)
        new = valid & ~st.has[act]
        if new.any():  # the reference's tracks.setdefault, in its order (station, then metric)
            if table is None:
                for a, j in np.argwhere(new):
                    detectors[act[a]].tracks.setdefault(names[j], MetricTrack())
            st.has[act] |= new
        last = st.last[act]
        # flatline
        run = np.where(valid, np.where(v == last, st.run[act] + 1, 1), st.run[act])
        flat = valid & varies & (run >= cfg.flatline_n)
        # stuck at a suspicious range limit
        limit_run = np.where(valid, np.where((v == lim_a) | (v == lim_b), st.limit_run[act] + 1, 0),
                             st.limit_run[act])
        stuck = valid & (limit_run >= cfg.stuck_n)
        # spike: confirm or dismiss the previous reading's jump, then look for a new one
        n, mean, var = st.n[act], st.mean[act], st.var[act]
        warm = n >= bcfg.warmup
        sigma = np.where(warm, np.maximum(np.sqrt(np.maximum(var, 0.0)), floor), registry_std)
        limit = cfg.spike_k * sigma
        jump_from = st.jump_from[act]
        pending = valid & ~np.isnan(jump_from)
        spiked = pending & (np.abs(v - jump_from) <= limit)
        jump = valid & ~pending & ~np.isnan(last) & (np.abs(v - last) > limit)
        st.jump_from[act] = np.where(pending, np.nan, np.where(jump, last, jump_from))
        st.jump_ms[act] = np.where(jump, ts_ms[rows][:, None], st.jump_ms[act])
        jump_value = st.jump_value[act] = np.where(jump, v, st.jump_value[act])
        st.last[act], st.run[act], st.limit_run[act] = np.where(valid, v, last), run, limit_run
        faulty = flat | stuck | jump
        # PM2.5 above PM10 (per station)
        pm_need = np.zeros(len(act), bool)
        if j25 is not None and j10 is not None:
            pm25, pm10 = v[:, j25], v[:, j10]
            both = valid[:, j25] & valid[:, j10]
            bad = both & (pm25 > pm10 + cfg.pm_tolerance_abs + cfg.pm_tolerance_rel * pm10)
            pm_run = st.pm_run[act] = np.where(both, np.where(bad, st.pm_run[act] + 1, 0), st.pm_run[act])
            faulty[:, j25] |= bad
            faulty[:, j10] |= bad
            pm_holds = pm_run >= cfg.pm_order_n
            pm_need = both & (pm_holds | st.pm_open[act])
        # alert lifecycles, only where a condition holds or an alert is open (rare): the reference's own code
        holds = np.stack((flat, stuck, spiked), axis=2)
        need = valid[:, :, None] & (holds | st.open[act]) & has_condition
        for a in np.flatnonzero(need.any(axis=(1, 2)) | pm_need):
            s, row = act[a], int(rows[a])
            det, ts = detectors[s], int(ts_ms[row])
            lat, lon = locate(row)
            reading = ReadingVerdict()
            for j in np.flatnonzero(need[a].any(axis=1)):
                name, value = names[j], float(v[a, j])
                for f in np.flatnonzero(need[a, j]):
                    fault = _PER_METRIC[f]
                    extra = {FLATLINE: {"n": float(run[a, j])}, STUCK: {},
                             SPIKE: {"spike": float(jump_value[a, j])} if spiked[a, j] else {}}[fault]
                    det._lifecycle(fault, name, bool(holds[a, j, f]), value, ts, extra, lat, lon, reading)
                open_now = det.tracks[name].open
                st.open[s, j] = [fault in open_now for fault in _PER_METRIC]
            if pm_need[a]:
                det._lifecycle(PM_ORDER, PM_ORDER_METRIC, bool(pm_holds[a]), float(v[a, j25]), ts,
                               {"other": float(v[a, j10])}, lat, lon, reading)
                st.pm_open[s] = PM_ORDER in det.tracks[PM_ORDER_METRIC].open
            if reading.events:
                verdict.events[row] = reading.events
        # learn the station's normal only from readings that passed fault detection (z before the update)
        learn = valid & ~faulty
        z = np.where(learn & warm, (v - mean) / sigma, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            n_next = n + learn
            weight = np.maximum(alpha, 1.0 / n_next)
            diff = v - mean
            incr = weight * diff
            st.n[act] = n_next
            st.mean[act] = np.where(learn, mean + incr, mean)
            st.var[act] = np.where(learn, (1.0 - weight) * (var + diff * incr), var)
        verdict.faults[rows] = faulty
        verdict.baseline_z[rows] = z
    if table is not None:
        table.scatter(table_rows, names, st)
    else:
        st.store(detectors, names)
    return verdict
