"""Learned station baselines: an exponentially decayed running mean and variance per station and metric.

Pure functions over plain floats so they are testable without Spark; :mod:`citysense_scorer.health.spark` keeps the
state in Spark's state store. The update is the incremental exponentially weighted form (Finch 2009, "Incremental
calculation of weighted mean and variance"): O(1) memory, no history. Early on the weight is ``max(alpha, 1/n)`` so
the first samples form an ordinary running mean instead of being dragged towards the initial zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class BaselineConfig:
    half_life: float = 3600.0  # samples (1 h at 1 Hz): how fast the station's "normal" forgets
    warmup: int = 300  # samples before any baseline verdict
    min_std_fraction: float = 0.05  # floor on the learned std, as a fraction of the registry std (flat data)

    @property
    def alpha(self) -> float:
        return 1.0 - 2.0 ** (-1.0 / self.half_life)


@dataclass
class Baseline:
    n: int = 0
    mean: float = 0.0
    var: float = 0.0

    def std(self, floor: float = 0.0) -> float:
        return max(math.sqrt(max(self.var, 0.0)), floor)

    def warm(self, config: BaselineConfig) -> bool:
        return self.n >= config.warmup

    def zscore(self, value: float, config: BaselineConfig, registry_std: float) -> float | None:
        """z of ``value`` against this baseline, or None during warm-up."""
        if not self.warm(config):
            return None
        return (value - self.mean) / self.std(config.min_std_fraction * registry_std)

    def update(self, value: float, config: BaselineConfig) -> None:
        self.n += 1
        weight = max(config.alpha, 1.0 / self.n)
        diff = value - self.mean
        incr = weight * diff
        self.mean += incr
        self.var = (1.0 - weight) * (self.var + diff * incr)


def score_and_update(baseline: Baseline, value: float, config: BaselineConfig, registry_std: float) -> float | None:
    """z against the baseline *before* this value (an outlier must not soften its own verdict), then learn it."""
    z = baseline.zscore(value, config, registry_std)
    baseline.update(value, config)
    return z
