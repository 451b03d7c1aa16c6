"""Column-wise fault detection (fault_batch) gives exactly what the reference detector (faults) gives row by row:
flags, baseline z-scores, events and the state left behind, across several micro-batches."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import orjson
import pytest
from citysense_common.registry import Registry
from citysense_scorer.health.baselines import BaselineConfig
from citysense_scorer.health.fault_batch import TrackTable, observe_batch
from citysense_scorer.health.faults import FaultConfig, FaultDetector, suspicious_limits

T0 = 1_767_225_600_000
CONFIG = FaultConfig(flatline_n=6, stuck_n=3, resolve_after={"flatline": 2, "stuck": 2, "spike": 4, "pm_order": 3})
BASELINE = BaselineConfig(half_life=50, warmup=15)
SERIALIZE = orjson.OPT_SERIALIZE_NUMPY


def detector(registry: Registry, station: str) -> FaultDetector:
    return FaultDetector(station, dict(registry.metrics), "city", CONFIG, BASELINE)


def hostile_sequence(registry: Registry, rng: np.random.Generator, length: int) -> np.ndarray:
    """Readings (length x metrics) mixing noise with every fault pattern: frozen values, values pinned at a range
    limit, one-reading spikes, steps, PM2.5 above PM10, and missing values."""
    names = list(registry.metrics)
    out = np.empty((length, len(names)))
    for j, name in enumerate(names):
        metric = registry.metrics[name]
        dist = metric.profiles.get("city")
        mean, std = (dist.mean, dist.std) if dist else (0.0, 1.0)
        col = rng.normal(mean, std, length)
        limits = suspicious_limits(metric, "city", CONFIG.limit_sigma) or (metric.range.max,)
        i = 0
        while i < length:
            kind, span = rng.integers(0, 6), int(rng.integers(1, 12))
            if kind == 0:
                col[i:i + span] = round(float(col[i]), 1)  # frozen
            elif kind == 1:
                col[i:i + span] = limits[int(rng.integers(0, len(limits)))]  # stuck at a limit
            elif kind == 2 and i > 0:
                col[i] = col[i - 1] + float(rng.choice([-1, 1])) * 40 * std  # spike (returns unless the next jumps)
                span = 1
            elif kind == 3:
                col[i:] += 10 * std  # a step that stays
            elif kind == 4:
                col[i:i + span] = np.nan  # missing
            i += span
        out[:, j] = col
    if "pm2_5" in names and "pm10" in names:
        j25, j10 = names.index("pm2_5"), names.index("pm10")
        swapped = rng.random(length) < 0.3
        out[swapped, j25] = out[swapped, j10] + 20  # PM2.5 above PM10
    return out


def reference(det: FaultDetector, names: list[str], ts: np.ndarray, values: np.ndarray, loc: tuple) -> tuple:
    faults, zs, events = [], [], []
    for t, row in zip(ts, values, strict=True):
        verdict = det.observe(int(t), {n: float(v) for n, v in zip(names, row, strict=True) if not math.isnan(v)},
                              *loc)
        faults.append([n in verdict.faults for n in names])
        zs.append([verdict.baseline_z.get(n, math.nan) for n in names])
        events.append(verdict.events)
    return np.array(faults, bool).reshape(-1, len(names)), np.array(zs).reshape(-1, len(names)), events


def state(det: FaultDetector) -> str:
    """Everything the detector remembers, as text (NaN compares equal to NaN here, unlike in dicts)."""
    return json.dumps({"tracks": {n: asdict(t) for n, t in det.tracks.items()}, "pm_run": det.pm_run},
                      sort_keys=True)


def table_state(det: FaultDetector, table: TrackTable, station: str) -> str:
    """:func:`state` of a station whose numbers live in a track table (its detector holds only open alerts)."""
    row, tracks = table.row_of[station], {}

    def opt(v: float) -> float | None:
        return None if math.isnan(v) else float(v)

    for j, name in enumerate(table.names):
        track = det.tracks.get(name)
        assert [f in (track.open if track else {}) for f in ("flatline", "stuck", "spike")] == \
            table.open[row, j].tolist()
        if not table.has[row, j]:
            assert track is None or not track.open
            continue
        tracks[name] = {"baseline": {"n": int(table.n[row, j]), "mean": float(table.mean[row, j]),
                                     "var": float(table.var[row, j])},
                        "last": opt(table.last[row, j]), "run": int(table.run[row, j]),
                        "limit_run": int(table.limit_run[row, j]), "pending_jump_from": opt(table.jump_from[row, j]),
                        "pending_jump_ms": int(table.jump_ms[row, j]),
                        "pending_jump_value": float(table.jump_value[row, j]),
                        "open": {f: asdict(o) for f, o in track.open.items()} if track else {}}
    pm = det.tracks.get("pm2_5")
    assert bool(table.pm_open[row]) == (pm is not None and "pm_order" in pm.open)
    return json.dumps({"tracks": tracks, "pm_run": int(table.pm_run[row])}, sort_keys=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("in_table", [False, True], ids=["objects", "table"])
def test_batch_matches_the_reference_row_by_row(registry: Registry, seed: int, in_table: bool) -> None:
    """Both ways to keep the state (the detectors' objects; a bucket's track table, re-read from its document
    between batches as after a restart) give the reference's flags, z-scores, events and state."""
    rng = np.random.default_rng(seed)
    names = list(registry.metrics)
    stations = [f"st-{i}" for i in range(7)]
    lengths = [int(rng.integers(1, 140)) for _ in stations]
    sequences = {s: hostile_sequence(registry, rng, n) for s, n in zip(stations, lengths, strict=True)}
    locs = {s: (52.0 + i / 10, 13.0) for i, s in enumerate(stations)}
    ref = {s: detector(registry, s) for s in stations}
    fast = {s: detector(registry, s) for s in stations}
    table = TrackTable(names) if in_table else None
    done = dict.fromkeys(stations, 0)
    batches = 0
    while any(done[s] < n for s, n in zip(stations, lengths, strict=True)):
        batches += 1
        # each micro-batch takes a random slice of every station (some stations none), like Kafka would
        chunk = {s: (done[s], min(n, done[s] + int(rng.integers(0, 40))))
                 for s, n in zip(stations, lengths, strict=True)}
        chunk = {s: ab for s, ab in chunk.items() if ab[1] > ab[0]}
        if not chunk:
            continue
        order = list(chunk)
        ts = np.concatenate([T0 + 1000 * np.arange(a, b, dtype=np.int64) for a, b in chunk.values()])
        values = np.concatenate([sequences[s][a:b] for s, (a, b) in chunk.items()])
        ends = np.cumsum([b - a for a, b in chunk.values()]).astype(np.int64)
        starts = ends - [b - a for a, b in chunk.values()]
        owner = np.repeat(np.arange(len(order)), ends - starts)
        table = TrackTable.from_doc(names, orjson.loads(orjson.dumps(table.to_doc(), option=SERIALIZE))) \
            if in_table else None
        got = observe_batch([fast[s] for s in order], starts, ends, ts, values, names,
                            lambda row, owner=owner, order=order: locs[order[owner[row]]],
                            table, table.rows(order) if table else None)
        for i, s in enumerate(order):
            a, b = int(starts[i]), int(ends[i])
            want_faults, want_z, want_events = reference(ref[s], names, ts[a:b], values[a:b], locs[s])
            assert (got.faults[a:b] == want_faults).all(), s
            np.testing.assert_array_equal(got.baseline_z[a:b], want_z)  # exact: same operations, same order
            assert [got.events.get(r, []) for r in range(a, b)] == want_events
            assert (table_state(fast[s], table, s) if table else state(fast[s])) == state(ref[s])
            done[s] = chunk[s][1]
    assert batches > 2
    opened = [e for det in ref.values() for t in det.tracks.values() for e in t.open]
    assert opened or seed  # the hostile data leaves faults open (checked on one seed, it varies by seed)


def test_every_fault_kind_occurs_in_the_hostile_data(registry: Registry) -> None:
    """The comparison above is only as good as its data: every detector fires on it."""
    rng = np.random.default_rng(0)
    names = list(registry.metrics)
    kinds = set()
    for i in range(7):
        det = detector(registry, f"st-{i}")
        values = hostile_sequence(registry, rng, 140)
        ts = T0 + 1000 * np.arange(140, dtype=np.int64)
        _, _, events = reference(det, names, ts, values, (52.0, 13.0))
        kinds |= {e.rule_id.split(".")[0] for row in events for e in row}
    assert kinds == {"fault-flatline", "fault-stuck", "fault-spike", "fault-pm-order"}


def test_empty_batch_and_no_stations(registry: Registry) -> None:
    names = list(registry.metrics)
    empty = np.empty((0, len(names)))
    got = observe_batch([], np.array([], np.int64), np.array([], np.int64), np.array([], np.int64), empty, names,
                        lambda row: (None, None))
    assert got.faults.shape == (0, len(names)) and got.events == {}


def test_a_table_observes_any_subset_of_its_metrics_and_leaves_the_others_alone(registry: Registry) -> None:
    """A micro-batch may lack some metric columns: observing only the others equals observing them all with the
    missing ones NaN (a missing value never changes a track), and the table's other columns stay as they were."""
    names = list(registry.metrics)
    rng = np.random.default_rng(3)
    values = hostile_sequence(registry, rng, 60)
    subset = [names[4], names[0], names[2]]  # another order too
    cols = [names.index(n) for n in subset]
    full, part = TrackTable(names), TrackTable(names)
    dets_full, dets_part = [detector(registry, "st-a")], [detector(registry, "st-a")]
    for start in range(0, 60, 20):
        ts = T0 + 1000 * np.arange(start, start + 20, dtype=np.int64)
        chunk = values[start:start + 20]
        masked = np.full_like(chunk, np.nan)
        masked[:, cols] = chunk[:, cols]
        starts, ends = np.array([0]), np.array([20])
        want = observe_batch(dets_full, starts, ends, ts, masked, names, lambda row: (None, None), full,
                             full.rows(["st-a"]))
        got = observe_batch(dets_part, starts, ends, ts, chunk[:, cols], subset, lambda row: (None, None), part,
                            part.rows(["st-a"]))
        assert (got.faults == want.faults[:, cols]).all()
        np.testing.assert_array_equal(got.baseline_z, want.baseline_z[:, cols])
    assert orjson.dumps(part.to_doc(), option=SERIALIZE) == orjson.dumps(full.to_doc(), option=SERIALIZE)
    assert not part.has[:, [j for j in range(len(names)) if j not in cols]].any()
    with pytest.raises(ValueError, match="not all in the track table"):
        part.gather(np.array([0]), ["no_such_metric"])


def test_a_table_read_under_other_metrics_keeps_the_ones_both_know(registry: Registry) -> None:
    """A metric added to the registry starts without tracks; one removed is left out; the others keep their state
    exactly, whatever their column order."""
    names = list(registry.metrics)
    table = TrackTable(names)
    values = hostile_sequence(registry, np.random.default_rng(5), 30)
    observe_batch([detector(registry, "st-a")], np.array([0]), np.array([30]),
                  T0 + 1000 * np.arange(30, dtype=np.int64), values, names, lambda row: (None, None), table,
                  table.rows(["st-a"]))
    doc = orjson.loads(orjson.dumps(table.to_doc(), option=SERIALIZE))
    now = [*reversed(names[1:]), "radiation"]  # names[0] removed, "radiation" added, the rest reversed
    reread = TrackTable.from_doc(now, doc)
    assert reread.stations == ["st-a"] and reread.names == now
    for k, name in enumerate(now[:-1]):
        j = names.index(name)
        for field in ("has", "run", "limit_run", "jump_ms", "n", "open"):
            assert (getattr(reread, field)[0, k] == getattr(table, field)[0, j]).all(), (name, field)
        for field in ("last", "jump_from", "jump_value", "mean", "var"):
            np.testing.assert_array_equal(getattr(reread, field)[0, k], getattr(table, field)[0, j])
    assert not reread.has[0, -1] and reread.n[0, -1] == 0 and math.isnan(reread.last[0, -1])
    assert reread.pm_run[0] == table.pm_run[0] and reread.pm_open[0] == table.pm_open[0]
    assert table.has[0].all()  # (the data gave every metric a track, so the comparison above covers them all)
