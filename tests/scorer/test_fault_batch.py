"""Column-wise fault detection (fault_batch) gives exactly what the reference detector (faults) gives row by row:
flags, baseline z-scores, events and the state left behind, across several micro-batches."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from citysense_common.registry import Registry
from citysense_scorer.baselines import BaselineConfig
from citysense_scorer.fault_batch import observe_batch
from citysense_scorer.faults import FaultConfig, FaultDetector, suspicious_limits

T0 = 1_767_225_600_000
CONFIG = FaultConfig(flatline_n=6, stuck_n=3, resolve_after={"flatline": 2, "stuck": 2, "spike": 4, "pm_order": 3})
BASELINE = BaselineConfig(half_life=50, warmup=15)


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


@pytest.mark.parametrize("seed", range(6))
def test_batch_matches_the_reference_row_by_row(registry: Registry, seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = list(registry.metrics)
    stations = [f"st-{i}" for i in range(7)]
    lengths = [int(rng.integers(1, 140)) for _ in stations]
    sequences = {s: hostile_sequence(registry, rng, n) for s, n in zip(stations, lengths, strict=True)}
    locs = {s: (52.0 + i / 10, 13.0) for i, s in enumerate(stations)}
    ref = {s: detector(registry, s) for s in stations}
    fast = {s: detector(registry, s) for s in stations}
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
        got = observe_batch([fast[s] for s in order], starts, ends, ts, values, names,
                            lambda row, owner=owner, order=order: locs[order[owner[row]]])
        for i, s in enumerate(order):
            a, b = int(starts[i]), int(ends[i])
            want_faults, want_z, want_events = reference(ref[s], names, ts[a:b], values[a:b], locs[s])
            assert (got.faults[a:b] == want_faults).all(), s
            np.testing.assert_array_equal(got.baseline_z[a:b], want_z)  # exact: same operations, same order
            assert [got.events.get(r, []) for r in range(a, b)] == want_events
            assert state(fast[s]) == state(ref[s])
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
