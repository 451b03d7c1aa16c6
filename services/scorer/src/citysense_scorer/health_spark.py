"""Spark adapter for station health: ``transformWithStateInPandas`` keyed by station, processing-time timers.

:func:`attach_health` takes the scorer's validated+scored frame (valid rows and dead letters) and returns the same
rows plus three columns - ``faults`` (metrics flagged faulty), ``baseline_z`` (z against the station's learned
normal, after warm-up) and ``health_event`` (null on readings) - and extra rows that carry one alert event each
(sensor faults, offline, forecasts; ``health_event`` set, every other column null). Dead letters pass through
untouched. The sink then calls :func:`split_health` to separate the two, :func:`mask_faulty` so faulty values never
reach threshold aggregates, and :func:`apply_station_status` to keep the stations' active/offline status.

State lives in Spark's state store (RocksDB provider, required by transformWithState) and survives restarts through
the checkpoint. The query runs in ``ProcessingTime`` mode so a no-data micro-batch runs every trigger and the offline
timers fire even when nothing arrives. A re-run micro-batch sees the same batch timestamp and the same state
version, so it emits the same events with the same ids (the sink's read-back dedupe then skips them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent, AlertKind, AlertState
from citysense_common.store.base import NotFound, Store
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import (
    ExpiredTimerInfo,
    StatefulProcessor,
    StatefulProcessorHandle,
    TimerValues,
)
from pyspark.sql.types import ArrayType, DoubleType, MapType, StringType, StructField, StructType

from citysense_scorer.health import BASELINE_Z_PREFIX, HealthContext, Row, StationHealth

log = logging.getLogger(__name__)
STATE_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
HEALTH_COLUMNS = ("faults", "baseline_z", "health_event")


class StationHealthProcessor(StatefulProcessor):
    def __init__(self, ctx: HealthContext, columns: Sequence[str]) -> None:
        self.ctx = ctx
        self.columns = list(columns)
        self.metric_names = [m for m in ctx.metrics if m in self.columns]

    def init(self, handle: StatefulProcessorHandle) -> None:
        self.handle = handle
        self.doc = handle.getValueState("health", StructType([StructField("doc", StringType(), True)]))

    def _load(self, station: str) -> StationHealth:
        return StationHealth.loads(station, self.ctx, self.doc.get()[0] if self.doc.exists() else None)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        station = key[0]
        pdf = pd.concat(list(rows), ignore_index=True)
        if station == DEAD_LETTER_KEY:
            for name in HEALTH_COLUMNS:
                pdf[name] = None
            yield _plain(pdf[self.columns])
            return
        # Arrow hands the worker naive timestamps (session time zone, UTC) or aware ones, depending on the path.
        ts_ms = pd.to_datetime(pdf["ts"], utc=True).astype("datetime64[ms, UTC]").astype("int64").to_numpy()
        order = np.lexsort((pdf["seq"].to_numpy(), ts_ms))
        pdf, ts_ms = pdf.iloc[order].reset_index(drop=True), ts_ms[order]
        values = pdf[self.metric_names].to_numpy(dtype="float64")
        lats, lons = pdf["lat"].to_numpy(dtype="float64"), pdf["lon"].to_numpy(dtype="float64")
        batch = [
            Row(int(ts_ms[i]), {n: float(v) for n, v in zip(self.metric_names, values[i], strict=True)
                                if not math.isnan(v)},
                None if math.isnan(lats[i]) else float(lats[i]), None if math.isnan(lons[i]) else float(lons[i]))
            for i in range(len(pdf))
        ]
        health = self._load(station)
        now = timerValues.getCurrentProcessingTimeInMs()
        results, events, timer = health.process(batch, now)
        for old in list(self.handle.listTimers()):
            self.handle.deleteTimer(old)
        self.handle.registerTimer(timer)
        self.doc.update((health.dumps(),))
        pdf["faults"] = [r.faults for r in results]
        pdf["baseline_z"] = [r.baseline_z for r in results]
        pdf["health_event"] = None
        yield _plain(pdf[self.columns])
        if events:
            yield self._event_rows(station, events)

    def handleExpiredTimer(self, key: Any, timerValues: TimerValues,
                           expiredTimerInfo: ExpiredTimerInfo) -> Iterator[pd.DataFrame]:
        station = key[0]
        health = self._load(station)
        events = health.on_timer(timerValues.getCurrentProcessingTimeInMs())
        if events:
            self.doc.update((health.dumps(),))
            yield self._event_rows(station, events)

    def _event_rows(self, station: str, events: list[AlertEvent]) -> pd.DataFrame:
        out = pd.DataFrame({c: [None] * len(events) for c in self.columns})
        out["station_id"] = station
        out["faults"] = [[] for _ in events]
        out["baseline_z"] = [{} for _ in events]
        out["health_event"] = [e.to_json().decode() for e in events]
        return _plain(out[self.columns])

    def close(self) -> None:
        pass


def _plain(pdf: pd.DataFrame) -> pd.DataFrame:
    """Columns pyspark 4.3's pandas->Arrow conversion of transformWithStateInPandas output chokes on become object
    columns: Arrow-backed extension columns (pandas 3 strings) and all-null columns (a string column whose values
    are all null arrives as float NaN and cannot be cast to a string array)."""
    for name in pdf.columns:
        col = pdf[name]
        if col.dtype == object:
            continue
        if len(col) and col.isna().all():
            pdf[name] = pd.Series([None] * len(col), index=pdf.index, dtype=object)
        elif pd.api.types.is_extension_array_dtype(col.dtype) and not isinstance(col.dtype, pd.DatetimeTZDtype):
            pdf[name] = col.astype(object)
    return pdf


DEAD_LETTER_KEY = " dead letters"  # a group key no station can have (a space is not allowed in station ids)


def attach_health(scored: DataFrame, ctx: HealthContext) -> DataFrame:
    """The scored stream plus station-health columns and event rows (see the module docstring).

    Every row goes through the one stateful operator - readings keyed by station, dead letters in one group of their
    own that passes through untouched - so the micro-batch reads Kafka once (two branches joined by a union would
    each read the source)."""
    scored.sparkSession.conf.set("spark.sql.streaming.stateStore.providerClass", STATE_PROVIDER)
    extra = [
        StructField("faults", ArrayType(StringType()), True),
        StructField("baseline_z", MapType(StringType(), DoubleType()), True),
        StructField("health_event", StringType(), True),
    ]
    schema = StructType([*scored.schema.fields, *extra])
    keyed = scored.withColumn("health_key", F.coalesce(F.col("station_id"), F.lit(DEAD_LETTER_KEY)))
    return keyed.groupBy("health_key").transformWithStateInPandas(
        statefulProcessor=StationHealthProcessor(ctx, schema.fieldNames()), outputStructType=schema,
        outputMode="Append", timeMode="ProcessingTime")


# -- sink side (pandas, driver) --------------------------------------------------------------------------------------

def split_health(pdf: pd.DataFrame) -> tuple[pd.DataFrame, list[AlertEvent]]:
    """(reading and dead-letter rows, the health alert events carried by the batch)."""
    if "health_event" not in pdf:
        return pdf, []
    carrier = pdf["health_event"].notna()
    events = [AlertEvent.model_validate_json(text) for text in pdf.loc[carrier, "health_event"]]
    events.sort(key=lambda e: (e.event_time, e.station_id, e.state != AlertState.RESOLVED))
    return pdf[~carrier].reset_index(drop=True), events


def faulty_metrics(row_faults: object) -> list[str]:
    if row_faults is None or (isinstance(row_faults, float) and math.isnan(row_faults)):
        return []
    return [str(m) for m in row_faults]  # type: ignore[attr-defined]


def mask_faulty(frame: pd.DataFrame, faults: pd.Series) -> pd.DataFrame:
    """Null every value a reading's ``faults`` names (and the heat index when its inputs are faulty), so faulty
    readings never feed threshold aggregates."""
    frame = frame.copy()
    lists = faults.reindex(frame.index).map(faulty_metrics)
    for metric in {m for fs in lists for m in fs}:
        bad = lists.map(lambda fs, m=metric: m in fs).to_numpy(dtype=bool)
        if metric in frame:
            frame.loc[bad, metric] = np.nan
        if metric in ("temperature", "humidity") and "heat_index" in frame:
            frame.loc[bad, "heat_index"] = np.nan
    return frame


def baseline_zscores(baseline_z: object) -> dict[str, float]:
    """Baseline z-scores keyed for ``EnrichedReading.zscores`` (``station:<metric>``, beside the registry z)."""
    if not baseline_z:
        return {}
    items = baseline_z.items() if isinstance(baseline_z, dict) else baseline_z  # Arrow maps arrive as pairs
    return {f"{BASELINE_Z_PREFIX}{k}": float(v) for k, v in items if v is not None}  # type: ignore[union-attr]


def apply_station_status(store: Store, events: Sequence[AlertEvent]) -> None:
    """Offline opens mark the station offline, resolves mark it active (older status changes never win)."""
    for event in events:
        if event.kind is not AlertKind.STATION_OFFLINE:
            continue
        status = "offline" if event.state is AlertState.OPEN else "active"
        try:
            store.set_station_status(event.station_id, status, event.event_time)
        except NotFound:
            log.warning("station %s: status %s for a station the store does not know", event.station_id, status)
