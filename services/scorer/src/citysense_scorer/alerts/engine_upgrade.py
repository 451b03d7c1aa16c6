"""Engine files (pickled snapshots and log entries) that an earlier scorer left in the checkpoint, read as current.

A scorer upgraded in place finds them in its checkpoint. Their classes may name the modules of the package's flat
layout (``citysense_scorer.engine``, ``citysense_scorer.series_table``), which :func:`unpickle` maps to where those
classes live. A snapshot of format 1 (one object per station and series, before the window state became arrays) is
read with stand-ins for the two classes it needs that no longer exist and converted, so windows, open alerts,
pending conditions and cooldowns carry over.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from citysense_scorer.alerts.engine import AlertEngine, EngineState
from citysense_scorer.alerts.rules import BUCKETS_PER_WINDOW


class _Fields:
    """Stand-in for the format-1 ``SeriesState`` and ``StationInfo``: pickle restores just their attributes."""


# Modules of the flat package layout that pickled engine files name, and where their classes live.
MOVED_MODULES = {
    "citysense_scorer.engine": "citysense_scorer.alerts.engine",
    "citysense_scorer.series_table": "citysense_scorer.alerts.series_table",
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:  # noqa: ANN401 - any class pickle asks for
        module = MOVED_MODULES.get(module, module)
        if module == "citysense_scorer.alerts.engine" and name in ("SeriesState", "StationInfo"):
            return _Fields
        return super().find_class(module, name)


def unpickle(data: bytes) -> Any:  # noqa: ANN401 - whatever the file holds
    """A pickled engine file (snapshot or log entry), whichever module layout wrote it."""
    return _Unpickler(io.BytesIO(data)).load()


def load_state(data: bytes, engine: AlertEngine) -> EngineState:
    """A pickled engine state of either format, as the current one."""
    state = unpickle(data)
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
