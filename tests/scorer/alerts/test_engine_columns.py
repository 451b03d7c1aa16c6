"""The column-wise engine against the scalar reference model (tests/scorer/scalar_engine.py), and its state.

Inputs are random but seeded: integer readings (so sums are exact in any order and the two can be compared for
equality) around the rules' thresholds, 1 Hz with gaps and jumps of hours, out-of-order readings inside a batch,
missing metrics and locations, outliers, and batches from one second to several slices long.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from citysense_scorer.alerts.engine import AlertEngine
from citysense_scorer.alerts.engine_log import EngineLog
from citysense_scorer.alerts.rules import RuleSet

from tests.scorer.scalar_engine import ScalarEngine

REPO = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000_000
EXTRA_RULES = [
    {"id": "pm10-max-2m", "metric": "pm10", "aggregation": "max", "window": "2m", "partial": False,
     "comparator": ">=", "for": "10s", "clear": 40, "cooldown": "1m", "source": "test",
     "bands": [{"threshold": 50, "severity": "warning", "label": "High"},
               {"threshold": 90, "severity": "critical", "label": "Very high"}]},
    {"id": "noise-now", "metric": "noise_level", "aggregation": "value", "window": "1m", "for": "0s", "clear": 60,
     "cooldown": "0s", "source": "test", "bands": [{"threshold": 70, "severity": "info", "label": "Loud"}]},
    {"id": "pm25-mean-3s", "metric": "pm2_5", "aggregation": "mean", "window": "3s", "for": "2s", "clear": 20,
     "cooldown": "30s", "source": "test", "bands": [{"threshold": 30, "severity": "info", "label": "Up"}]},
]


def rules() -> RuleSet:
    doc = yaml.safe_load((REPO / "config" / "rules.yaml").read_text(encoding="utf-8"))
    return RuleSet.model_validate({**doc, "rules": [*doc["rules"], *EXTRA_RULES]})


def engines(registry, eval_step_ms: int) -> tuple[AlertEngine, ScalarEngine]:  # noqa: ANN001
    kwargs = {"watermark_ms": 10**12, "outlier_cooldown_ms": 20_000, "eval_step_ms": eval_step_ms}
    return AlertEngine(rules(), registry, **kwargs), ScalarEngine(rules(), registry, **kwargs)


def batches(seed: int, stations: int = 10, count: int = 30) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    clock = np.full(stations, T0, dtype=np.int64) + rng.integers(0, 1000, stations)
    level = rng.integers(5, 80, stations).astype(float)
    out = []
    for _ in range(count):
        frames = []
        for s in np.flatnonzero(rng.random(stations) < 0.8):  # not every station in every batch
            n = int(rng.integers(1, 12))
            step = np.where(rng.random(n) < 0.03, rng.integers(60_000, 4 * 3_600_000, n), 1000)  # gaps and jumps
            ts = clock[s] + np.cumsum(step)
            clock[s] = ts[-1]
            if n > 3 and rng.random() < 0.3:
                ts = rng.permutation(ts)  # out of order inside the batch
            level[s] = float(np.clip(level[s] + rng.integers(-15, 16), 0, 300))
            values = np.clip(level[s] + rng.integers(-10, 11, n), 0, None)
            spike = rng.random(n) < 0.05
            frame = pd.DataFrame({
                "station_id": f"s{s:02d}", "ts_ms": ts,
                "lat": np.where(rng.random(n) < 0.1, np.nan, 52.0 + s / 100), "lon": 13.0 + s / 100,
                "pm2_5": np.where(rng.random(n) < 0.1, np.nan, np.where(spike, 400.0, values)),
                "pm10": np.where(rng.random(n) < 0.2, np.nan, values + 10),
                "noise_level": rng.integers(50, 80, n).astype(float),
                "heat_index": np.where(rng.random(n) < 0.5, np.nan, rng.integers(20, 45, n).astype(float)),
                "n_outliers": spike.astype(int), "outlier_names": np.where(spike, "pm2_5", ""),
                "zmax": np.where(spike, 6.0, rng.random(n)),
            })
            frames.append(frame)
        if frames:
            out.append(pd.concat(frames, ignore_index=True))
    return out


def comparable(events: list) -> list[dict]:
    return [e.model_dump() for e in events]


@pytest.mark.parametrize(("seed", "eval_step_ms"), [(0, 1000), (1, 2000), (2, 5000), (3, 5000), (4, 5000),
                                                    (5, 60_000)])
def test_the_column_wise_engine_matches_the_scalar_model(registry, seed: int, eval_step_ms: int) -> None:
    columns, scalar = engines(registry, eval_step_ms)
    produced = 0
    for batch_id, df in enumerate(batches(seed)):
        got = columns.apply(batch_id, columns.reduce(df))
        want = scalar.apply(batch_id, scalar.reduce(df))
        assert comparable(got) == comparable(want), f"batch {batch_id}"
        assert columns.watermark() == scalar.watermark()
        produced += len(got)
    assert produced > 10  # the inputs do open, update and resolve alerts
    kinds = {(e.rule_id, e.state) for e in got}
    assert kinds  # the last batch still produced something to compare


def test_every_rule_and_state_is_exercised_by_the_comparison(registry) -> None:
    columns, _ = engines(registry, 5000)
    seen = set()
    for batch_id, df in enumerate(batches(0) + batches(1)):
        seen |= {(e.rule_id, e.state.value) for e in columns.apply(batch_id, columns.reduce(df))}
    for rule in ("pm25-acute-1m", "pm10-max-2m", "noise-now", "pm25-mean-3s", "outlier"):
        assert {(rule, "open"), (rule, "resolved")} <= seen, rule
    assert any(state == "update" for _, state in seen)


def test_only_pairs_with_a_met_or_open_condition_keep_lifecycle_state(registry) -> None:
    engine, _ = engines(registry, 5000)
    quiet = pd.DataFrame({"station_id": [f"q{i}" for i in range(50)], "ts_ms": T0, "lat": 52.0, "lon": 13.0,
                          "pm2_5": 5.0, "pm10": 5.0, "noise_level": 40.0, "heat_index": 20.0, "n_outliers": 0,
                          "outlier_names": "", "zmax": 0.1})
    assert engine.apply(0, engine.reduce(quiet)) == []
    assert engine.state.slots == {} and not any(engine.state.watched.values())
    loud = quiet.assign(ts_ms=T0 + 1000, noise_level=[90.0] + [40.0] * 49)
    events = engine.apply(1, engine.reduce(loud))
    assert [(e.station_id, e.rule_id, e.state.value) for e in events] == [("q0", "noise-now", "open")]
    assert engine.state.watched["noise-now"] == {engine.state.station_rows["q0"]}
    back = quiet.assign(ts_ms=T0 + 2000)
    events = engine.apply(2, engine.reduce(back))
    assert [(e.station_id, e.state.value) for e in events] == [("q0", "resolved")]
    assert engine.state.watched["noise-now"] == set()


def test_the_window_ring_forgets_what_left_the_window(registry) -> None:
    engine, _ = engines(registry, 1000)
    table_key = ("pm2_5", 60_000)
    base = {"station_id": "s", "lat": 52.0, "lon": 13.0, "pm10": np.nan, "noise_level": np.nan,
            "heat_index": np.nan, "n_outliers": 0, "outlier_names": "", "zmax": 0.1}
    first = pd.DataFrame({**base, "ts_ms": T0 + np.arange(60) * 1000, "pm2_5": 100.0})
    engine.apply(0, engine.reduce(first))
    table, row = engine.state.series[table_key], engine.state.station_rows["s"]
    assert table.aggregate("mean", np.array([row]))[0] == 100.0
    # 30 s later: half the window is new readings of 10, half the old 100s
    later = pd.DataFrame({**base, "ts_ms": T0 + (60 + np.arange(30)) * 1000, "pm2_5": 10.0})
    engine.apply(1, engine.reduce(later))
    assert table.aggregate("mean", np.array([row]))[0] == pytest.approx((30 * 100 + 30 * 10) / 60)
    # a reading older than the window now is dropped, not counted
    stale = pd.DataFrame({**base, "ts_ms": [T0 + 5000], "pm2_5": 1000.0})
    engine.apply(2, engine.reduce(stale))
    assert table.aggregate("mean", np.array([row]))[0] == pytest.approx((30 * 100 + 30 * 10) / 60)
    # in one batch: a reading exactly one window older than the newest is dropped, not added to the newest bucket
    edge = pd.DataFrame({**base, "ts_ms": [T0 + 30_000, T0 + 90_000], "pm2_5": [1000.0, 10.0]})
    engine.apply(3, engine.reduce(edge))
    assert table.aggregate("mean", np.array([row]))[0] == pytest.approx((29 * 100 + 31 * 10) / 60)
    # the same timestamp again: the later reading is the latest value
    again = pd.DataFrame({**base, "ts_ms": [T0 + 90_000], "pm2_5": 20.0})
    engine.apply(4, engine.reduce(again))
    assert table.aggregate("value", np.array([row]))[0] == 20.0
    # a jump of a day clears the whole ring
    jump = pd.DataFrame({**base, "ts_ms": [T0 + 86_400_000], "pm2_5": 7.0})
    engine.apply(5, engine.reduce(jump))
    assert table.aggregate("mean", np.array([row]))[0] == 7.0


def test_state_round_trips_through_a_snapshot(registry, tmp_path: Path) -> None:
    engine, _ = engines(registry, 5000)
    log = EngineLog(tmp_path, snapshot_every=3)
    data = batches(2)
    for batch_id, df in enumerate(data[:7]):
        reduced = engine.reduce(df)
        log.write(batch_id, reduced, engine.apply(batch_id, reduced), [], engine, watermark=0)
    restored, _ = engines(registry, 5000)
    log.recover(restored)
    assert restored.state.version == 6
    assert pickle.dumps(restored.state.slots) == pickle.dumps(engine.state.slots)
    for batch_id, df in enumerate(data[7:], start=7):
        assert comparable(restored.apply(batch_id, restored.reduce(df))) == \
            comparable(engine.apply(batch_id, engine.reduce(df)))


def test_engine_files_that_name_the_flat_layouts_modules_recover(registry, tmp_path: Path,  # noqa: ANN001
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint written while the engine's classes lived in citysense_scorer.engine and
    citysense_scorer.series_table: its snapshot and log entries recover as if written now."""
    import citysense_scorer.alerts.engine as engine_module
    import citysense_scorer.alerts.series_table as table_module

    engine, _ = engines(registry, 5000)
    data = batches(2)
    log = EngineLog(tmp_path, snapshot_every=4)
    with monkeypatch.context() as flat:
        flat_names = {"citysense_scorer.engine": engine_module, "citysense_scorer.series_table": table_module}
        for name, module in flat_names.items():
            flat.setitem(sys.modules, name, module)
            for cls in [c for c in vars(module).values() if isinstance(c, type) and c.__module__ == module.__name__]:
                flat.setattr(cls, "__module__", name)
        for batch_id, df in enumerate(data[:7]):
            reduced = engine.reduce(df)
            log.write(batch_id, reduced, engine.apply(batch_id, reduced), [], engine, watermark=0)
    assert b"citysense_scorer.series_table" in (log.snap_dir / "4").read_bytes()
    assert b"citysense_scorer.engine" in (log.log_dir / "6").read_bytes()
    restored, _ = engines(registry, 5000)
    log.recover(restored)  # snapshot 4, then the entries of batches 5 and 6
    assert restored.state.version == 6
    assert restored.state.slots == engine.state.slots
    assert isinstance(log.read(6)["input"], engine_module.BatchInput)
    for batch_id, df in enumerate(data[7:], start=7):
        assert comparable(restored.apply(batch_id, restored.reduce(df))) == \
            comparable(engine.apply(batch_id, engine.reduce(df)))


def test_a_snapshot_from_before_the_arrays_is_converted_and_the_engine_goes_on_as_before(registry,
                                                                                        tmp_path: Path) -> None:
    # data/engine-state-v1.pickle: the state the object-per-series engine (format 1) held after batches(7)[:15];
    # data/engine-state-v1-events.json: (event_id, state, value) of what that engine produced from the rest.
    data = Path(__file__).parent.parent / "data"
    log = EngineLog(tmp_path)
    (log.snap_dir / "14").write_bytes((data / "engine-state-v1.pickle").read_bytes())
    engine, _ = engines(registry, 5000)
    log.recover(engine)
    assert engine.state.version == 14 and len(engine.state.station_ids) == 10
    got = []
    for batch_id, df in enumerate(batches(7)[15:], start=15):
        got += [[e.event_id, e.state.value, e.value] for e in engine.apply(batch_id, engine.reduce(df))]
    want = json.loads((data / "engine-state-v1-events.json").read_text(encoding="utf-8"))
    assert len(want) > 50 and got == want
