"""Bucketed window series for every station at once, as numpy arrays (the alert engine's state).

A *series* is (metric, window); it keeps, per station, ``BUCKETS_PER_WINDOW`` buckets of window/60 each (sum,
count and, when a rule needs it, max). The buckets are a ring aligned to the station's newest bucket: slot
``b % 60`` holds bucket ``b`` for the 60 buckets up to the newest one, so a window aggregate is a plain row sum and
there is no bucket number to store or compare per slot. When the newest bucket moves on, the slots it passes over
are cleared. A reading whose bucket has already left the window is dropped: the window never counts it again.

Why arrays: a micro-batch of a large fleet touches every station, and Python objects per station and series would
cost interpreter work per station and batch in the driver. Here one slice is a few numpy operations over the touched
rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from citysense_scorer.alerts.rules import BUCKETS_PER_WINDOW

NO_BUCKET = np.iinfo(np.int64).min


def grow(array: np.ndarray, rows: int, fill: float | int) -> np.ndarray:
    if len(array) >= rows:
        return array
    bigger = np.full((max(rows, 2 * len(array), 64), *array.shape[1:]), fill, dtype=array.dtype)
    bigger[:len(array)] = array
    return bigger


def runs(*keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each run of rows equal in every one of ``keys`` (sorted, same length)."""
    if not len(keys[0]):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.zeros(len(keys[0]), dtype=bool)
    change[0] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change)
    return starts, np.r_[starts[1:], len(keys[0])]


@dataclass
class SeriesUpdate:
    """What one slice brought to one series: the stations touched and, per station, the slice's first reading
    time (how long a condition first seen in this slice has held)."""

    rows: np.ndarray  # station rows, ascending, unique
    since_ms: np.ndarray  # per row: the slice's earliest reading of this series


@dataclass
class SeriesTable:
    width_ms: int
    keep_max: bool
    total: np.ndarray = field(default_factory=lambda: np.zeros((0, BUCKETS_PER_WINDOW)))
    count: np.ndarray = field(default_factory=lambda: np.zeros((0, BUCKETS_PER_WINDOW), dtype=np.int32))
    peak: np.ndarray = field(default_factory=lambda: np.zeros((0, BUCKETS_PER_WINDOW)))
    newest: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # NO_BUCKET = no data yet
    first_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    last_ms: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    last_value: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def create(cls, window_ms: int, keep_max: bool) -> SeriesTable:
        return cls(max(1, window_ms // BUCKETS_PER_WINDOW), keep_max)

    def reserve(self, rows: int) -> None:
        self.total = grow(self.total, rows, 0.0)
        self.count = grow(self.count, rows, 0)
        if self.keep_max:
            self.peak = grow(self.peak, rows, -np.inf)
        self.newest = grow(self.newest, rows, NO_BUCKET)
        self.first_ms = grow(self.first_ms, rows, 0)
        self.last_ms = grow(self.last_ms, rows, -1)
        self.last_value = grow(self.last_value, rows, np.nan)

    def has_data(self, rows: np.ndarray) -> np.ndarray:
        return self.newest[rows] != NO_BUCKET

    def add(self, row: np.ndarray, bucket: np.ndarray, total: np.ndarray, count: np.ndarray, peak: np.ndarray,
            first_ms: np.ndarray, last_ms: np.ndarray, last_value: np.ndarray) -> SeriesUpdate:
        """Add one slice's aggregates, one entry per (station row, bucket), no (row, bucket) twice."""
        order = np.lexsort((last_ms, row))
        row, bucket, total, count, peak = row[order], bucket[order], total[order], count[order], peak[order]
        first_ms, last_ms, last_value = first_ms[order], last_ms[order], last_value[order]
        starts, ends = runs(row)
        ends = ends - 1  # the last entry of each row: the newest reading
        rows = row[starts]
        since = np.minimum.reduceat(first_ms, starts)
        fresh = ~self.has_data(rows)
        # Times and the latest value (a tie on last_ms goes to the new reading, as a later arrival would)
        self.first_ms[rows] = np.where(fresh, since, np.minimum(self.first_ms[rows], since))
        newer = last_ms[ends] >= self.last_ms[rows]
        self.last_ms[rows] = np.where(newer, last_ms[ends], self.last_ms[rows])
        self.last_value[rows] = np.where(newer, last_value[ends], self.last_value[rows])
        # Move each station's ring up to its new newest bucket, clearing the slots passed over: slot s is passed over
        # when s lies in (base, new] modulo 60, base being the old newest bucket (a first time: all 60 slots).
        new = self.last_ms[rows] // self.width_ms  # >= the old newest bucket: last_ms never goes back
        base = np.where(fresh, new - BUCKETS_PER_WINDOW, self.newest[rows])
        advance = np.minimum(new - base, BUCKETS_PER_WINDOW)
        moving = advance > 0
        if moving.any():
            m_rows = rows[moving]
            slots = np.arange(BUCKETS_PER_WINDOW)
            passed = ((slots[None, :] - (base[moving, None] + 1)) % BUCKETS_PER_WINDOW) < advance[moving, None]
            self.total[m_rows] = np.where(passed, 0.0, self.total[m_rows])
            self.count[m_rows] = np.where(passed, 0, self.count[m_rows])
            if self.keep_max:
                self.peak[m_rows] = np.where(passed, -np.inf, self.peak[m_rows])
        self.newest[rows] = new
        # Buckets still inside the window go into their slot; older ones are never counted again.
        position = np.repeat(np.arange(len(rows)), ends - starts + 1)
        live = bucket > new[position] - BUCKETS_PER_WINDOW
        r, slot = row[live], bucket[live] % BUCKETS_PER_WINDOW
        self.total[r, slot] += total[live]
        self.count[r, slot] += count[live].astype(np.int32)
        if self.keep_max:
            self.peak[r, slot] = np.maximum(self.peak[r, slot], peak[live])
        return SeriesUpdate(rows, since)

    def aggregate(self, how: str, rows: np.ndarray) -> np.ndarray:
        """The window's mean, max or latest value per row; NaN where the window holds no reading."""
        if how == "value":
            return self.last_value[rows]
        counts = self.count[rows].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if how == "mean":
                return np.where(counts > 0, self.total[rows].sum(axis=1) / counts, np.nan)
        return np.where(counts > 0, self.peak[rows].max(axis=1), np.nan)

    def complete(self, rows: np.ndarray, window_ms: int) -> np.ndarray:
        """Whether each row's data spans the whole window (to one bucket)."""
        return self.last_ms[rows] - self.first_ms[rows] >= window_ms - self.width_ms
