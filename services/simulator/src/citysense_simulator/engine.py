"""The original sensor algorithm, vectorised over stations and metrics.

Per sensor: the next value is the weighted average of its last ``history`` true values (weights rising linearly
from 1 for the oldest to 1.5 for the newest) plus N(0, σ). With probability ``recalibration_rate`` the value is
pulled back towards μ by ``recalibration_strength`` of its distance. Incidental outliers of ``outlier_sigma`` σ
appear with ``outlier_probability``; they are what the sensor reports, not what the air does, so they are not fed
back into the history. Values are clamped to the metric's physical range (never mirrored with abs()), and PM2.5
never exceeds PM10 (PM10 includes it; drawn independently the two crossed for minutes and the scorer rightly called
the healthy stations' PM sensors faulty).

The weighted average is kept incrementally: with positions k = 0 (oldest) .. H-1 and weights w_k = 1 + δk,
δ = 0.5/(H-1), pushing x_new and dropping x_old changes the weighted sum W and plain sum S by
    W' = W - x_old - δ (S - x_old) + 1.5 x_new,   S' = S - x_old + x_new
so a tick costs O(stations × metrics) instead of O(stations × metrics × H). An exact recomputation every H ticks
removes floating-point drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from citysense_common.registry import Metric


@dataclass(frozen=True)
class EngineParams:
    history: int = 300
    recalibration_rate: float = 0.2
    recalibration_strength: float = 0.5
    outlier_probability: float = 0.001
    outlier_sigma: float = 6.0


class SensorField:
    """State of every sensor of every simulated station; ``tick()`` returns the next (stations, metrics) values."""

    def __init__(self, metrics: list[Metric], profile: str, stations: int, params: EngineParams | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.params = params or EngineParams()
        self.rng = rng or np.random.default_rng()
        self.metrics = metrics
        self.names = [metric.name for metric in metrics]
        self.mu = np.array([m.profiles[profile].mean for m in metrics], dtype=np.float64)
        self.sigma = np.array([m.profiles[profile].std for m in metrics], dtype=np.float64)
        self.lo = np.array([m.range.min for m in metrics], dtype=np.float64)
        self.hi = np.array([m.range.max for m in metrics], dtype=np.float64)
        self.stations = stations
        # (PM2.5 column, PM10 column) when both are simulated: the fine fraction is part of the coarse one.
        self.pm_pair = (self.names.index("pm2_5"), self.names.index("pm10")) \
            if {"pm2_5", "pm10"} <= set(self.names) else None
        h = self.params.history
        if h < 2:
            raise ValueError("history must be at least 2 readings")
        self.delta = 0.5 / (h - 1)
        self.weights = 1.0 + self.delta * np.arange(h)  # oldest .. newest
        self.weight_total = float(self.weights.sum())
        # Ring of (history, stations, metrics): a tick reads and writes one contiguous (stations, metrics) slab.
        # float32: 10,000 stations × 10 metrics × 300 readings is 120 MB instead of 240 MB.
        start = self.rng.normal(self.mu, self.sigma, size=(h, stations, len(metrics)))
        self.history = np.clip(start, self.lo, self.hi).astype(np.float32)
        self.head = 0  # index of the oldest value in the ring
        self.ticks = 0
        self._recompute()

    def _recompute(self, block_stations: int = 128) -> None:
        """Sums from scratch, a block of stations at a time: a float64 copy of a big city's whole history would be
        hundreds of MB, allocated every ``history`` ticks."""
        order = np.roll(np.arange(self.params.history), -self.head)  # ring positions, oldest first
        total = np.empty((self.stations, len(self.metrics)))
        weighted = np.empty_like(total)
        for start in range(0, self.stations, block_stations):
            block = self.history[order, start:start + block_stations].astype(np.float64)
            total[start:start + block_stations] = block.sum(axis=0)
            weighted[start:start + block_stations] = np.tensordot(self.weights, block, axes=(0, 0))
        self.sum, self.wsum = total, weighted

    def expected(self) -> np.ndarray:
        """The weighted average of each sensor's history (what the next value is centred on)."""
        return self.wsum / self.weight_total

    def tick(self) -> np.ndarray:
        p = self.params
        shape = (self.stations, len(self.metrics))
        value = self.expected() + self.rng.normal(0.0, 1.0, size=shape) * self.sigma
        recalibrate = self.rng.random(shape) < p.recalibration_rate
        value = np.where(recalibrate, self.mu + (value - self.mu) * (1.0 - p.recalibration_strength), value)
        value = np.clip(value, self.lo, self.hi)
        if self.pm_pair is not None:
            fine, coarse = self.pm_pair
            value[:, fine] = np.minimum(value[:, fine], value[:, coarse])

        x_old = self.history[self.head].astype(np.float64)
        self.wsum += -x_old - self.delta * (self.sum - x_old) + 1.5 * value
        self.sum += value - x_old
        self.history[self.head] = value
        self.head = (self.head + 1) % p.history
        self.ticks += 1
        if self.ticks % p.history == 0:
            self._recompute()

        if p.outlier_probability > 0:
            outlier = self.rng.random(shape) < p.outlier_probability
            if outlier.any():
                sign = np.where(self.rng.random(shape) < 0.5, -1.0, 1.0)
                reported = np.clip(value + sign * p.outlier_sigma * self.sigma, self.lo, self.hi)
                value = np.where(outlier, reported, value)
        return value
