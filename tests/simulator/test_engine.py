"""The vectorised sensor algorithm: long-run statistics, recalibration, outliers, clamping, incremental sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
from citysense_common.registry import load_registry
from citysense_simulator.engine import EngineParams, SensorField

SEED_METRICS = load_registry().profile_metrics("seed")


def run_field(params: EngineParams, stations: int = 200, ticks: int = 3000, warmup: int = 600,
              seed: int = 3) -> tuple[SensorField, np.ndarray]:
    field = SensorField(SEED_METRICS, "seed", stations, params, np.random.default_rng(seed))
    values = np.array([field.tick() for _ in range(ticks)])[warmup:]
    return field, values


@pytest.fixture(scope="module")
def seed_run() -> np.ndarray:
    return run_field(EngineParams(outlier_probability=0.0))[1]


def unclamped(metric) -> bool:  # noqa: ANN001 - a registry Metric
    d = metric.profiles["seed"]
    return metric.range.min < d.mean - 6 * d.std and d.mean + 6 * d.std < metric.range.max


# Recalibration shrinks 20 % of values to half their distance from μ, so the long-run std is
# σ·sqrt(1 - r(1 - (1 - s)²)) ≈ 0.922σ for r = 0.2, s = 0.5; the slowly wandering weighted-average level adds a
# little on top (≈1 %). Tolerances: mean within 0.05σ of μ; std within 5 % of that prediction.
EXPECTED_STD_RATIO = math.sqrt(1 - 0.2 * (1 - 0.5**2))


@pytest.mark.parametrize("metric", [m for m in SEED_METRICS if unclamped(m)], ids=lambda m: m.name)
def test_seed_profile_long_run_mean_and_std(seed_run: np.ndarray, metric) -> None:  # noqa: ANN001
    column = seed_run[:, :, SEED_METRICS.index(metric)]
    dist = metric.profiles["seed"]
    assert abs(column.mean() - dist.mean) < 0.05 * dist.std
    assert column.std() == pytest.approx(dist.std * EXPECTED_STD_RATIO, rel=0.05)


@pytest.mark.parametrize("name", ["wind_speed", "rainfall"])
def test_values_are_clamped_to_the_range_not_mirrored(seed_run: np.ndarray, name: str) -> None:
    index = [m.name for m in SEED_METRICS].index(name)
    column = seed_run[:, :, index]
    low = SEED_METRICS[index].range.min
    assert column.min() == low  # abs() would never produce exactly the limit this often
    assert (column == low).mean() > 0.05
    assert (column >= low).all()


def test_recalibration_rate_matches_the_setting() -> None:
    # With strength 1 a recalibrated value lands exactly on μ, which continuous noise never does by chance.
    field, values = run_field(EngineParams(recalibration_rate=0.2, recalibration_strength=1.0,
                                           outlier_probability=0.0), stations=100, ticks=400, warmup=0)
    temperature = values[:, :, 0]
    assert (temperature == 25.0).mean() == pytest.approx(0.2, abs=0.01)


def test_outlier_rate_and_size_match_the_settings() -> None:
    # Humidity (μ 60, σ 3, range 0..100): a 10σ outlier either way stays inside the range, so none is clamped.
    params = EngineParams(outlier_probability=0.01, outlier_sigma=10.0, recalibration_rate=0.0)
    field = SensorField(SEED_METRICS[1:2], "seed", 500, params, np.random.default_rng(5))
    jumps = []
    for _ in range(400):
        centre = field.expected()[:, 0].copy()
        jumps.append(np.abs(field.tick()[:, 0] - centre))
    jumps = np.array(jumps)
    outliers = jumps > 6 * 3.0  # normal noise practically never reaches 6σ (p ≈ 2e-9)
    assert outliers.mean() == pytest.approx(0.01, abs=0.002)
    assert np.median(jumps[outliers]) == pytest.approx(10 * 3.0, rel=0.05)  # size = outlier_sigma · σ


def test_outliers_do_not_enter_the_history() -> None:
    params = EngineParams(outlier_probability=1.0, outlier_sigma=100.0, recalibration_rate=0.0)
    field = SensorField(SEED_METRICS[:1], "seed", 10, params, np.random.default_rng(1))
    for _ in range(50):
        field.tick()
    assert np.abs(field.expected()[:, 0] - 25.0).max() < 10  # history stayed near μ despite 200σ reports


def test_incremental_weighted_average_equals_direct_computation() -> None:
    field = SensorField(SEED_METRICS, "seed", 7, EngineParams(history=300), np.random.default_rng(9))
    for _ in range(457):  # not a multiple of the history, so the exact recomputation has not just run
        field.tick()
    ordered = np.roll(field.history, -field.head, axis=0).astype(np.float64)  # oldest first
    weights = np.linspace(1.0, 1.5, 300)
    direct = (ordered * weights[:, None, None]).sum(axis=0) / weights.sum()
    assert np.allclose(field.expected(), direct, rtol=1e-9, atol=1e-6)


def test_the_newest_reading_weighs_half_again_as_much_as_the_oldest() -> None:
    field = SensorField(SEED_METRICS[:1], "seed", 1, EngineParams(history=300), np.random.default_rng(2))
    assert field.weights[0] == pytest.approx(1.0)
    assert field.weights[-1] == pytest.approx(1.5)
    assert np.all(np.diff(field.weights) > 0)


def test_history_shorter_than_two_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        SensorField(SEED_METRICS, "seed", 1, EngineParams(history=1))


def test_pm2_5_never_exceeds_pm10() -> None:
    """PM10 includes PM2.5; independent draws crossed for minutes and the scorer flagged healthy stations' sensors."""
    city = load_registry().profile_metrics("city")
    names = [m.name for m in city]
    field = SensorField(city, "city", 200, EngineParams(outlier_probability=0.0), np.random.default_rng(8))
    values = np.array([field.tick() for _ in range(1500)])
    fine, coarse = values[:, :, names.index("pm2_5")], values[:, :, names.index("pm10")]
    assert (fine <= coarse).all()
    assert (fine < coarse).mean() > 0.5  # a bound, not a copy: PM2.5 still varies on its own
    direct = np.tensordot(field.weights, np.roll(field.history, -field.head, axis=0).astype(np.float64), axes=(0, 0))
    assert np.allclose(field.wsum, direct, rtol=1e-4)  # the bounded value is what entered the history


def test_the_exact_recomputation_needs_no_copy_of_the_whole_history() -> None:
    """Every ``history`` ticks the sums are recomputed exactly. For a big city the history is hundreds of MB
    (10,000 stations: 120 MB as float32); a float64 copy of it made the simulator's memory jump by ~180 MB every
    five minutes. The recomputation works through blocks of stations, and gives the same sums."""
    import tracemalloc

    field = SensorField(SEED_METRICS, "seed", 3000, EngineParams(history=300), np.random.default_rng(5))
    for _ in range(7):
        field.tick()
    ordered = np.roll(field.history, -field.head, axis=0).astype(np.float64)
    expected_sum = ordered.sum(axis=0)
    expected_wsum = np.tensordot(field.weights, ordered, axes=(0, 0))
    whole_float64 = ordered.nbytes
    del ordered
    tracemalloc.start()
    try:
        field._recompute()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < whole_float64 / 8, f"recompute peaked at {peak / 2**20:.0f} MiB"
    assert np.allclose(field.sum, expected_sum, rtol=1e-12, atol=1e-9)
    assert np.allclose(field.wsum, expected_wsum, rtol=1e-12, atol=1e-9)
