"""Registry scores of valid readings, vectorised over a micro-batch: the z-score of every profiled metric against
the profile's distribution, the ``outliers`` list (|z| above the bound, registry order) and the derived heat index.

Computed in the sink on the driver, not in the stream: they are pure functions of the values, cheap over a whole
batch here, while as stream columns (a double per metric and a list per reading) they would cross the JVM three
times - into Spark from the source, through the health operator's JSON packing and back out to the driver.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from citysense_common.registry import Registry


class RegistryScorer:
    def __init__(self, registry: Registry, profile: str, z_bound: float) -> None:
        names = list(registry.metrics)
        self.scored = [name for name in names if profile in registry.metrics[name].profiles]
        dists = [registry.metrics[name].profiles[profile] for name in self.scored]
        self.mean = np.array([d.mean for d in dists], dtype="float64")
        self.std = np.array([d.std for d in dists], dtype="float64")
        self.z_bound = z_bound
        self.heat = "temperature" in names and "humidity" in names

    def zscores(self, values: np.ndarray) -> np.ndarray:
        """(rows, scored metrics) z from (rows, scored metrics) values; NaN where a value is missing."""
        return (values - self.mean) / self.std

    def add_to(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` (valid readings, one column per registry metric) plus ``z_<metric>`` per profiled metric,
        ``outliers`` and ``heat_index``."""
        n = len(frame)
        values = frame[self.scored].to_numpy(dtype="float64").reshape(n, len(self.scored))
        z = self.zscores(values)
        with np.errstate(invalid="ignore"):
            flagged = np.abs(z) > self.z_bound  # NaN compares False: a missing metric is never an outlier
        names = np.array(self.scored, dtype=object)
        outliers = [[] for _ in range(n)]
        for i in np.flatnonzero(flagged.any(axis=1)):
            outliers[i] = names[flagged[i]].tolist()
        columns: dict[str, object] = {f"z_{name}": z[:, j] for j, name in enumerate(self.scored)}
        columns["outliers"] = outliers
        columns["heat_index"] = (heat_index_c_array(frame["temperature"].to_numpy(dtype="float64"),
                                                    frame["humidity"].to_numpy(dtype="float64"))
                                 if self.heat else np.full(n, np.nan))
        return frame.assign(**columns)


def heat_index_c_array(temperature_c: np.ndarray, humidity: np.ndarray) -> np.ndarray:
    """NWS heat index (Rothfusz regression with the NWS adjustments) in °C; NaN where an input is missing.
    https://www.wpc.ncep.noaa.gov/html/heatindex_equation.shtml"""
    t = temperature_c * 9 / 5 + 32
    rh = humidity
    simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + rh * 0.094)
    full = (-42.379 + 2.04901523 * t + 10.14333127 * rh - 0.22475541 * t * rh
            - 0.00683783 * t * t - 0.05481717 * rh * rh + 0.00122874 * t * t * rh
            + 0.00085282 * t * rh * rh - 0.00000199 * t * t * rh * rh)
    with np.errstate(invalid="ignore"):
        dry = (rh < 13) & (t >= 80) & (t <= 112)
        full = full - np.where(dry, ((13 - rh) / 4) * np.sqrt(np.clip((17 - np.abs(t - 95)) / 17, 0, None)), 0)
        humid = (rh > 85) & (t >= 80) & (t <= 87)
        full = full + np.where(humid, ((rh - 85) / 10) * ((87 - t) / 5), 0)
        hi = np.where((simple + t) / 2 < 80, simple, full)
    return (hi - 32) * 5 / 9


def heat_index_c(temperature_c: float, humidity: float) -> float:
    """Scalar heat index in °C (tests)."""
    if math.isnan(temperature_c) or math.isnan(humidity):
        return math.nan
    return float(heat_index_c_array(np.array([temperature_c]), np.array([humidity]))[0])
