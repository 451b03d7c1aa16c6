"""The forecast series of every station in a health bucket, as columns: one array per bucket of event time.

A long-window forecast keeps per station and metric the [sum, count] of every 5-minute bucket of the window: 288 buckets
for a 24-hour mean. Kept in each station's document, that history would make the bucket document, written on every
micro-batch, grow with uptime to megabytes. Here a bucket of event time is one array of (sums, counts) x metrics x
stations, stored under its own key in the state store (a map state beside the bucket document) and written only when it
changes - in steady state one array per micro-batch, the current one; the closed buckets are never written again.

History is kept for ``keep`` buckets behind the newest reading of the whole health bucket (the longest window plus
an hour). A station whose clock lags its neighbours by more than that hour loses the oldest part of its window;
within it, what a station's projection reads is exactly what its own series would hold.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from citysense_scorer.health.forecast import Window

SLACK_BUCKETS = 12  # an hour of 5-minute buckets kept beyond the longest window: stations whose clocks lag a little


class ForecastHistory:
    """Per bucket of event time, (2, metrics, stations) float64: sums then counts; a station's column is its slot
    (stations get slots in order of arrival, for good)."""

    def __init__(self, metrics: Sequence[str], width_ms: int, keep: int) -> None:
        self.metrics = list(metrics)
        self.width_ms = width_ms
        self.keep = keep
        self.slots: list[str] = []
        self.slot_of: dict[str, int] = {}
        self.cells: dict[int, np.ndarray] = {}
        self.capacity = 0
        self.newest = -1  # newest bucket number with a reading of any station
        self.dirty: set[int] = set()  # changed since the last save
        self.gone: set[int] = set()  # dropped since the last save

    # -- layout ---------------------------------------------------------------------------------------------------
    def slot(self, station: str) -> int:
        slot = self.slot_of.get(station)
        if slot is None:
            slot = self.slot_of[station] = len(self.slots)
            self.slots.append(station)
            if slot >= self.capacity:
                self.capacity = max(64, 2 * self.capacity)
                for b, cell in self.cells.items():
                    self.cells[b] = self._widen(cell)
        return slot

    def _widen(self, cell: np.ndarray) -> np.ndarray:
        out = np.zeros((2, len(self.metrics), self.capacity))
        out[:, :, :cell.shape[2]] = cell
        return out

    def _cell(self, b: int) -> np.ndarray:
        cell = self.cells.get(b)
        if cell is None:
            cell = self.cells[b] = np.zeros((2, len(self.metrics), self.capacity))
            self.gone.discard(b)  # a stored entry of that bucket (from a dropped state) is overwritten, not deleted
        return cell

    @property
    def floor(self) -> int:
        return self.newest - self.keep + 1

    # -- readings -------------------------------------------------------------------------------------------------
    def advance(self, newest_ts_ms: int) -> None:
        """A reading at ``newest_ts_ms`` arrived: drop the buckets that fell out of the kept span."""
        self.newest = max(self.newest, newest_ts_ms // self.width_ms)
        self.prune()

    def prune(self) -> None:
        """Drop the buckets below the kept span (the deletions go out with the next save)."""
        for b in [b for b in self.cells if b < self.floor]:
            del self.cells[b]
            self.dirty.discard(b)
            self.gone.add(b)

    def add(self, slots: np.ndarray, ts_ms: np.ndarray, values: np.ndarray, usable: np.ndarray) -> None:
        """Rows (slot, event time, values: rows x metrics) into their buckets where ``usable`` (rows x metrics).
        Each cell sums its values in row order: the order a station's own series would add them in."""
        buckets = ts_ms // self.width_ms
        keep = buckets >= self.floor
        for b in np.unique(buckets[keep]).tolist():
            rows = keep & (buckets == b)
            cell = None
            for j in range(len(self.metrics)):
                take = rows & usable[:, j]
                if take.any():
                    cell = self._cell(b) if cell is None else cell
                    np.add.at(cell[0, j], slots[take], values[take, j])
                    np.add.at(cell[1, j], slots[take], 1.0)
            if cell is not None:
                self.dirty.add(b)

    def window(self, metric: str, slots: np.ndarray) -> Window:
        """The series of the stations in ``slots`` for one metric, as :func:`~citysense_scorer.health.forecast.project`
        reads it."""
        j = self.metrics.index(metric)

        def read(first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
            sums, counts = np.zeros((len(slots), last - first + 1)), np.zeros((len(slots), last - first + 1))
            for b in range(first, last + 1):
                if (cell := self.cells.get(b)) is not None:
                    sums[:, b - first], counts[:, b - first] = cell[0, j, slots], cell[1, j, slots]
            return sums, counts
        return read

    def migrate(self, station: str, series: dict[str, dict[str, list[float]]]) -> None:
        """A station's series as documents before this module kept them ({metric: {bucket: [sum, count]}})."""
        slot = self.slot(station)
        for metric, data in series.items():
            if metric not in self.metrics:
                continue
            j = self.metrics.index(metric)
            for b, (total, count) in data.items():
                cell = self._cell(int(b))
                cell[0, j, slot], cell[1, j, slot] = total, count
                self.dirty.add(int(b))
                self.newest = max(self.newest, int(b))

    # -- state ----------------------------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "slots": self.slots, "newest": self.newest}

    def restore(self, meta: dict[str, Any], entries: Iterable[tuple[int, str]]) -> None:
        """The history a bucket document (``meta``) and its stored buckets (``entries``) describe."""
        for station in meta["slots"]:
            self.slot(station)
        self.newest = meta["newest"]
        for b, text in entries:
            if b >= self.floor:
                self._place(b, text)
            else:  # cannot happen when the entries come from our own saves; drop rather than keep forever
                self.gone.add(b)

    def _place(self, b: int, text: str) -> None:
        names, n, body = text.split(";", 2)
        stored = np.frombuffer(zlib.decompress(base64.b64decode(body)), np.float64)
        metrics = names.split(",") if names else []
        stored = stored.reshape(2, len(metrics), int(n))
        cell = self._cell(b)
        for j, metric in enumerate(metrics):
            if metric in self.metrics:
                cell[:, self.metrics.index(metric), :stored.shape[2]] = stored[:, j, :]

    def encode(self, b: int) -> str:
        """One bucket's stored value: its metrics, its station count and the arrays (zlib, base64: the map state's
        value is a string)."""
        n = len(self.slots)
        body = base64.b64encode(zlib.compress(self.cells[b][:, :, :n].tobytes(), 1)).decode("ascii")
        return f"{','.join(self.metrics)};{n};{body}"

    def changes(self) -> tuple[dict[int, str], list[int]]:
        """(bucket -> value to store, buckets to delete) since the last call."""
        puts = {b: self.encode(b) for b in sorted(self.dirty)}
        gone = sorted(self.gone)
        self.dirty.clear()
        self.gone.clear()
        return puts, gone
