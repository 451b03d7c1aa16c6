"""AlertEngine.reduce (one sort, numpy reductions over runs) against the pandas groupby it replaced, kept here as the
reference: same frames, same dtypes, same row order, on seeded hostile batches (ties in event time, several slices
and buckets per station, missing metrics and locations, all-NaN columns, outliers with repeated names)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from citysense_scorer.alerts.engine import SERIES_AGG_COLUMNS, AlertEngine
from citysense_scorer.alerts.rules import BUCKETS_PER_WINDOW

from tests.scorer.alerts.test_engine_columns import rules

T0 = 1_800_000_000_000
NAMES = ["pm2_5", "pm10", "noise_level", "temperature"]


def groupby_reduce(engine: AlertEngine, readings: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The engine's reduce as it was written with pandas groupby (the reference)."""
    frames = []
    readings = readings.assign(slice=readings["ts_ms"] // engine.eval_step_ms)
    keys = ["station_id", "slice", "bucket"]
    for metric, window_ms in engine.series_keys:
        if metric not in readings:
            continue
        part = readings.loc[readings[metric].notna(), ["station_id", "slice", "ts_ms", metric]]
        if part.empty:
            continue
        width = max(1, window_ms // BUCKETS_PER_WINDOW)
        part = part.assign(bucket=part["ts_ms"] // width).sort_values(["station_id", "ts_ms"], kind="stable")
        agg = part.groupby(keys, sort=True)[metric].agg(["sum", "count", "max", "last"]).reset_index()
        times = part.groupby(keys, sort=True)["ts_ms"].agg(["min", "max"]).reset_index()
        agg["first_ms"] = times["min"].to_numpy()
        agg["last_ms"] = times["max"].to_numpy()
        agg = agg.rename(columns={"last": "last_value"})
        agg["metric"] = metric
        agg["window_ms"] = window_ms
        frames.append(agg)
    series_aggs = (pd.concat(frames, ignore_index=True)[SERIES_AGG_COLUMNS] if frames
                   else pd.DataFrame(columns=SERIES_AGG_COLUMNS))
    ordered = readings.sort_values(["station_id", "ts_ms"], kind="stable")
    by_station = ordered.groupby(["station_id", "slice"], sort=True)
    stations = pd.DataFrame({
        "last_ms": by_station["ts_ms"].max(),
        "lat": by_station["lat"].last(),
        "lon": by_station["lon"].last(),
        "outlier": by_station["n_outliers"].sum() > 0,
        "zmax": by_station["zmax"].max(),
    })
    flagged = ordered[ordered["n_outliers"] > 0]
    names = flagged.groupby(["station_id", "slice"], sort=True)["outlier_names"].agg(
        lambda s: ",".join(sorted({n for v in s for n in v.split(",") if n})))
    stations["outlier_metrics"] = names.reindex(stations.index).fillna("").astype(object)
    return series_aggs, stations.reset_index()


def hostile_batch(rng: np.random.Generator, rows: int, stations: int, span_ms: int, integers: bool) -> pd.DataFrame:
    ids = [f"st-{i:04d}" for i in rng.permutation(stations)]
    ts = T0 + rng.integers(0, span_ms, rows) // 500 * 500  # coarse: many readings share a time
    frame = {"station_id": rng.choice(ids, rows), "ts_ms": ts,
             "lat": np.where(rng.random(rows) < 0.4, np.nan, rng.random(rows)),
             "lon": np.where(rng.random(rows) < 0.4, np.nan, rng.random(rows))}
    for name in NAMES:
        values = rng.integers(0, 300, rows).astype(float) if integers else rng.normal(40, 30, rows)
        frame[name] = np.where(rng.random(rows) < 0.25, np.nan, values)
    frame["heat_index"] = np.nan  # a series whose column is all NaN
    n_outliers = np.where(rng.random(rows) < 0.1, rng.integers(1, 4, rows), 0)
    frame["n_outliers"] = n_outliers
    frame["outlier_names"] = ["" if k == 0 else ",".join(rng.choice(NAMES, k)) for k in n_outliers]
    frame["zmax"] = np.where(rng.random(rows) < 0.3, np.nan, rng.normal(0, 3, rows))
    return pd.DataFrame(frame)


def assert_same(engine: AlertEngine, batch: pd.DataFrame, exact: bool) -> None:
    want_series, want_stations = groupby_reduce(engine, batch)
    got = engine.reduce(batch)
    tolerance = {} if exact else {"check_exact": False, "rtol": 1e-12}
    pd.testing.assert_frame_equal(got.series_aggs, want_series, **tolerance)
    pd.testing.assert_frame_equal(got.stations, want_stations, **tolerance)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("eval_step_ms", [1000, 5000])
def test_reduce_matches_the_groupby_reference(registry, seed: int, eval_step_ms: int) -> None:  # noqa: ANN001
    engine = AlertEngine(rules(), registry, watermark_ms=10**12, outlier_cooldown_ms=0, eval_step_ms=eval_step_ms)
    rng = np.random.default_rng(seed)
    rows, stations = int(rng.integers(1, 4000)), int(rng.integers(1, 300))
    # integer values: sums are exact whatever the order of addition, so the frames must be equal to the bit
    assert_same(engine, hostile_batch(rng, rows, stations, span_ms=int(rng.integers(1, 40_000)), integers=True),
                exact=True)
    assert_same(engine, hostile_batch(rng, rows, stations, span_ms=200_000, integers=False), exact=False)


def test_reduce_of_a_single_reading_and_of_metrics_the_rules_do_not_read(registry) -> None:  # noqa: ANN001
    engine = AlertEngine(rules(), registry, watermark_ms=10**12, outlier_cooldown_ms=0)
    one = pd.DataFrame({"station_id": ["st-1"], "ts_ms": [T0], "lat": [np.nan], "lon": [1.0], "pm2_5": [12.0],
                        "n_outliers": [0], "outlier_names": [""], "zmax": [np.nan]})
    assert_same(engine, one, exact=True)
    got = engine.reduce(one)
    assert got.series_aggs["metric"].unique().tolist() == ["pm2_5"]
    assert np.isnan(got.stations.loc[0, "lat"]) and got.stations.loc[0, "lon"] == 1.0
    no_series = one.drop(columns=["pm2_5"]).assign(temperature=[20.0])
    assert engine.reduce(no_series).series_aggs.empty
    assert_same(engine, no_series, exact=True)


def test_the_station_row_keeps_the_last_known_location_and_every_outlier_name(registry) -> None:  # noqa: ANN001
    engine = AlertEngine(rules(), registry, watermark_ms=10**12, outlier_cooldown_ms=0, eval_step_ms=60_000)
    batch = pd.DataFrame({
        "station_id": ["b", "a", "a", "a", "b"], "ts_ms": [T0 + 4, T0 + 3, T0 + 1, T0 + 2, T0 + 5],
        "lat": [5.0, np.nan, 1.0, 2.0, np.nan], "lon": [5.0, np.nan, 1.0, 2.0, np.nan],
        "pm2_5": [1.0, 2.0, 3.0, 4.0, 5.0], "n_outliers": [0, 1, 2, 0, 0],
        "outlier_names": ["", "pm10", "pm2_5,pm10", "", ""], "zmax": [np.nan, 1.0, -4.0, np.nan, np.nan]})
    stations = engine.reduce(batch).stations.set_index("station_id")
    assert stations.loc["a", "lat"] == 2.0  # newest reading (T0+3) has none: the one before it
    assert stations.loc["b", "lat"] == 5.0
    assert stations.loc["a", "outlier_metrics"] == "pm10,pm2_5"
    assert stations.loc["a", "zmax"] == 1.0 and np.isnan(stations.loc["b", "zmax"])
    assert stations.loc["a", "last_ms"] == T0 + 3


def test_an_empty_batch_reduces_to_empty_frames(registry) -> None:  # noqa: ANN001
    engine = AlertEngine(rules(), registry, watermark_ms=10**12, outlier_cooldown_ms=0)
    empty = hostile_batch(np.random.default_rng(0), 1, 1, span_ms=1, integers=True).iloc[:0]
    got = engine.reduce(empty)
    assert got.series_aggs.empty and list(got.series_aggs.columns) == SERIES_AGG_COLUMNS
    assert got.stations.empty
    assert list(got.stations.columns) == ["station_id", "slice", "last_ms", "lat", "lon", "outlier", "zmax",
                                          "outlier_metrics"]
