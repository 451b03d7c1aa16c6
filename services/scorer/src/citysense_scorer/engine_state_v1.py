"""Engine snapshots written before the window state became arrays (format 1: one object per station and series).

A scorer upgraded in place finds such a snapshot in its checkpoint. It is read with stand-ins for the two classes
that no longer exist and converted, so windows, open alerts, pending conditions and cooldowns carry over.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from citysense_scorer.engine import AlertEngine, EngineState
from citysense_scorer.rules import BUCKETS_PER_WINDOW


class _Fields:
    """Stand-in for the format-1 ``SeriesState`` and ``StationInfo``: pickle restores just their attributes."""


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: ANN401 - any class pickle asks for
        if module == "citysense_scorer.engine" and name in ("SeriesState", "StationInfo"):
            return _Fields
        return super().find_class(module, name)


def load_state(data: bytes, engine: AlertEngine) -> EngineState:
    """A pickled engine state of either format, as the current one."""
    state = _Unpickler(io.BytesIO(data)).load()
    if "station_rows" in vars(state):
        return state
    return _convert(vars(state), engine)


def _convert(old: dict[str, Any], engine: AlertEngine) -> EngineState:
    new = EngineState(version=old["version"], max_event_ms=old["max_event_ms"])
    ids = sorted({k[0] for k in old["series"]} | set(old["stations"]) | {k[0] for k in old["slots"]})
    new.rows_of(np.array(ids, dtype=object))
    for station, info in old["stations"].items():
        row = new.station_rows[station]
        new.seen_ms[row] = info.last_ms
        if info.lat is not None:
            new.lat[row], new.lon[row] = info.lat, info.lon
    for (station, metric, window_ms), series in old["series"].items():
        key = (metric, window_ms)
        table, row = new.table(key, engine.keeps_max(key)), new.station_rows[station]
        newest = series.last_ms // table.width_ms
        for bucket, (total, count, peak) in series.buckets.items():
            if bucket > newest - BUCKETS_PER_WINDOW:  # what the window still counts
                slot = bucket % BUCKETS_PER_WINDOW
                table.total[row, slot], table.count[row, slot] = total, count
                if table.keep_max:
                    table.peak[row, slot] = peak
        table.newest[row], table.first_ms[row] = newest, series.first_ms
        table.last_ms[row], table.last_value[row] = series.last_ms, series.last_value
    new.slots = old["slots"]
    for (station, rule_id), slot in new.slots.items():
        if slot.watched:
            new.watched.setdefault(rule_id, set()).add(new.station_rows[station])
    return new
