"""A reference model of the alert engine's window state: one Python object per (station, series), every touched
(station, rule) evaluated one at a time - the engine as it was before its state became numpy arrays.

It shares the alert lifecycle (``_step``, ``_outlier_step``, events) with :class:`AlertEngine`, so comparing the two
checks exactly what the arrays replaced: bucketing, window edges, aggregates, complete-window checks, the choice of
which (station, rule) pairs to evaluate, and the order events come out in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent
from citysense_scorer.alerts.engine import AlertEngine, BatchInput
from citysense_scorer.alerts.rules import BUCKETS_PER_WINDOW


@dataclass
class ScalarSeries:
    width_ms: int
    buckets: dict[int, list[float]] = field(default_factory=dict)  # bucket -> [sum, count, max]
    first_ms: int = 0
    last_ms: int = -1
    last_value: float = math.nan

    def add(self, bucket: int, total: float, count: int, peak: float) -> None:
        cur = self.buckets.setdefault(bucket, [0.0, 0, -math.inf])
        cur[0] += total
        cur[1] += count
        cur[2] = max(cur[2], peak)

    def aggregate(self, how: str) -> float | None:
        if how == "value":
            return None if math.isnan(self.last_value) else self.last_value
        oldest = self.last_ms // self.width_ms - BUCKETS_PER_WINDOW + 1
        live = [v for b, v in sorted(self.buckets.items()) if b >= oldest]
        count = sum(v[1] for v in live)
        if not count:
            return None
        return sum(v[0] for v in live) / count if how == "mean" else max(v[2] for v in live)


class ScalarEngine(AlertEngine):
    """Same constructor and API as :class:`AlertEngine`; the window state is per-object and scalar."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - AlertEngine's
        super().__init__(*args, **kwargs)
        self.scalar: dict[tuple[str, str, int], ScalarSeries] = {}

    def apply(self, batch_id: int, data: BatchInput) -> list[AlertEvent]:
        events: list[AlertEvent] = []
        series_aggs, stations = data.series_aggs, data.stations
        if len(stations):
            aggs_by_slice = dict(tuple(series_aggs.groupby("slice", sort=True))) if len(series_aggs) else {}
            for number, slice_stations in stations.groupby("slice", sort=True):
                events.extend(self._scalar_slice(aggs_by_slice.get(number, series_aggs.iloc[0:0]), slice_stations))
        self.state.version = batch_id
        return events

    def _scalar_slice(self, series_aggs: pd.DataFrame, stations: pd.DataFrame) -> list[AlertEvent]:
        st = self.state
        first: dict[tuple[str, str, int], int] = {}
        for row in series_aggs.itertuples(index=False):
            key = (row.station_id, row.metric, int(row.window_ms))
            first[key] = min(first.get(key, int(row.first_ms)), int(row.first_ms))
            series = self.scalar.get(key)
            if series is None:
                series = self.scalar[key] = ScalarSeries(max(1, int(row.window_ms) // BUCKETS_PER_WINDOW),
                                                         first_ms=int(row.first_ms))
            series.add(int(row.bucket), float(row.sum), int(row.count), float(row.max))
            series.first_ms = min(series.first_ms, int(row.first_ms))
            if int(row.last_ms) >= series.last_ms:
                series.last_ms, series.last_value = int(row.last_ms), float(row.last_value)
        events: list[AlertEvent] = []
        for row in stations.itertuples(index=False):
            (index,) = st.rows_of(np.array([row.station_id], dtype=object))
            if int(row.last_ms) >= st.seen_ms[index]:
                st.seen_ms[index] = int(row.last_ms)
                if not pd.isna(row.lat):
                    st.lat[index], st.lon[index] = float(row.lat), float(row.lon)
            st.max_event_ms = max(st.max_event_ms, int(row.last_ms))
            for rule in self.rules.rules:
                key = (row.station_id, rule.metric, rule.window_ms)
                series = self.scalar.get(key)
                if series is None or key not in first:
                    continue
                if not rule.partial and series.last_ms - series.first_ms < rule.window_ms - series.width_ms:
                    continue
                value = series.aggregate(rule.aggregation)
                if value is not None:
                    events.extend(self._step(int(index), rule, value, series.last_ms, first[key]))
            events.extend(self._outlier_step(int(index), bool(row.outlier), int(row.last_ms), row.outlier_metrics,
                                             float(row.zmax)))
        return events
