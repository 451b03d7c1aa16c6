"""Learned baselines: exponentially decayed mean/variance, warm-up, z before update."""

from __future__ import annotations

import numpy as np
import pytest
from citysense_scorer.health.baselines import Baseline, BaselineConfig, score_and_update


def test_running_mean_and_std_match_the_sample_while_young() -> None:
    cfg = BaselineConfig(half_life=1e9, warmup=10)
    rng = np.random.default_rng(1)
    values = rng.normal(40.0, 5.0, 2000)
    b = Baseline()
    for v in values:
        b.update(float(v), cfg)
    assert b.mean == pytest.approx(values.mean(), rel=1e-3)
    assert b.std() == pytest.approx(values.std(), rel=0.02)


def test_no_verdict_during_warmup_then_z_against_own_normal() -> None:
    cfg = BaselineConfig(half_life=600, warmup=50)
    b = Baseline()
    rng = np.random.default_rng(2)
    zs = [score_and_update(b, float(v), cfg, registry_std=5.0) for v in rng.normal(100.0, 2.0, 49)]
    assert all(z is None for z in zs)
    for v in rng.normal(100.0, 2.0, 200):
        score_and_update(b, float(v), cfg, registry_std=5.0)
    z = score_and_update(b, 120.0, cfg, registry_std=5.0)
    assert z is not None and 7 < z < 14  # 20 above a ~100 +- 2 normal


def test_decay_forgets_an_old_level() -> None:
    cfg = BaselineConfig(half_life=100, warmup=1)
    b = Baseline()
    for _ in range(1000):
        b.update(10.0, cfg)
    for _ in range(1000):
        b.update(50.0, cfg)
    assert b.mean == pytest.approx(50.0, abs=0.1)


def test_flat_history_uses_the_std_floor() -> None:
    cfg = BaselineConfig(half_life=100, warmup=5, min_std_fraction=0.1)
    b = Baseline()
    for _ in range(10):
        b.update(7.0, cfg)
    assert b.zscore(8.0, cfg, registry_std=2.0) == pytest.approx(5.0)
