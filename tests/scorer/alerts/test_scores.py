"""Registry scores the sink adds to valid readings: z per profiled metric, the outliers list and the heat index."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from citysense_common.registry import Registry
from citysense_scorer.alerts.scores import RegistryScorer, heat_index_c, heat_index_c_array


def readings(registry: Registry, **columns: list[float]) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    return pd.DataFrame({name: columns.get(name, [math.nan] * n) for name in registry.metrics})


def test_z_outliers_and_heat_index(registry: Registry) -> None:
    scorer = RegistryScorer(registry, "city", z_bound=3.72)
    frame = readings(registry, pm2_5=[30.0, 10.0, math.nan], temperature=[32.0, 10.3, 60.0],
                     humidity=[70.0, 50.0, math.nan])
    out = scorer.add_to(frame)
    # z = (30 - 10) / 5 = 4 > 3.72: an outlier; temperature z = (32 - 10.3) / 7.5 = 2.89: not one.
    assert out["z_pm2_5"].tolist()[:2] == pytest.approx([4.0, 0.0])
    assert math.isnan(out["z_pm2_5"][2]) and math.isnan(out["z_pm10"][0])  # missing value: no z, never an outlier
    assert out["z_temperature"][0] == pytest.approx((32 - 10.3) / 7.5)
    assert out["outliers"].tolist() == [["pm2_5"], [], ["temperature"]]
    assert out["heat_index"][0] == pytest.approx(heat_index_c(32.0, 70.0))
    assert math.isnan(out["heat_index"][2])  # no humidity
    assert list(frame.columns) == list(registry.metrics)  # the input frame is left as it was


def test_outliers_follow_registry_order_and_the_bound(registry: Registry) -> None:
    both = RegistryScorer(registry, "city", z_bound=3.72).add_to(
        readings(registry, pm10=[200.0], pm2_5=[100.0], temperature=[10.0]))
    order = [name for name in registry.metrics if name in ("pm2_5", "pm10")]
    assert both["outliers"].tolist() == [order]
    lenient = RegistryScorer(registry, "city", z_bound=100.0).add_to(readings(registry, pm2_5=[100.0]))
    assert lenient["outliers"].tolist() == [[]]


def test_empty_batch(registry: Registry) -> None:
    out = RegistryScorer(registry, "city", z_bound=3.72).add_to(readings(registry, pm2_5=[]))
    assert len(out) == 0 and "z_pm2_5" in out and "outliers" in out and "heat_index" in out


def test_heat_index_matches_nws_table() -> None:
    # NWS heat index chart: 90 °F at 70 % RH -> 106 °F; 80 °F at 40 % -> 80 °F; 86 °F at 90 % (humid adjustment)
    # -> 105 °F; 100 °F at 10 % (dry adjustment) -> 95 °F.
    assert heat_index_c((90 - 32) * 5 / 9, 70) * 9 / 5 + 32 == pytest.approx(106, abs=1)
    assert heat_index_c((80 - 32) * 5 / 9, 40) * 9 / 5 + 32 == pytest.approx(80, abs=1)
    assert heat_index_c((86 - 32) * 5 / 9, 90) * 9 / 5 + 32 == pytest.approx(105, abs=1)
    assert heat_index_c((100 - 32) * 5 / 9, 10) * 9 / 5 + 32 == pytest.approx(95, abs=1)
    assert math.isnan(heat_index_c(math.nan, 50))
    both = heat_index_c_array(np.array([math.nan, 32.0]), np.array([50.0, math.nan]))
    assert np.isnan(both).all()  # a missing input gives no heat index, not an error
