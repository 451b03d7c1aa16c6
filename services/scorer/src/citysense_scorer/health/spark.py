"""Spark adapter for station health: ``transformWithStateInPandas`` keyed by station bucket, processing-time timers.

:func:`attach_health` takes the scorer's validated+scored frame (valid rows and dead letters) and returns the same rows
plus, per metric, ``fault_<metric>`` (the value is faulty) and ``z_station:<metric>`` (z against the station's learned
normal after warm-up, NaN before), and ``health_event`` (null on readings), and extra rows that carry one alert event
each (sensor faults, offline, forecasts; ``health_event`` set, every other column null). Dead letters pass through with
their columns; readings come out without the Kafka position and dead-letter columns (null: the sink reads those of dead
letters only). The sink then separates readings from events, keeps faulty values out of threshold aggregates and keeps
the stations' active/offline status (:mod:`citysense_scorer.sink.health`). The detectors themselves run column-wise over
each bucket's batch (:mod:`citysense_scorer.health.fault_batch`).

State lives in Spark's state store (RocksDB provider, required by transformWithState) and survives restarts through
the checkpoint. The query runs in ``ProcessingTime`` mode so a no-data micro-batch runs every trigger and the offline
timers fire even when nothing arrives. A re-run micro-batch sees the same batch timestamp and the same state
version, so it emits the same events with the same ids (the sink's read-back dedupe then skips them).
"""

from __future__ import annotations

import base64
import functools
import logging
import uuid
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.streaming.stateful_processor import (
    ExpiredTimerInfo,
    StatefulProcessor,
    StatefulProcessorHandle,
    TimerValues,
)
from pyspark.sql.types import BooleanType, DoubleType, LongType, StringType, StructField, StructType

from citysense_scorer.health.bucket import BASELINE_Z_PREFIX, BatchColumns, HealthBucket, HealthContext
from citysense_scorer.worker_gc import freeze_kept

log = logging.getLogger(__name__)
STATE_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
FAULT_PREFIX = "fault_"  # one bool column per metric, True where the reading's value is faulty
STATION_Z_PREFIX = "z_" + BASELINE_Z_PREFIX  # and one float column per metric, z against the station's baseline


def verdict_names(metrics: Sequence[str]) -> tuple[list[str], list[str]]:
    """The operator's verdict columns for ``metrics``: (fault flags, baseline z-scores)."""
    return [f"{FAULT_PREFIX}{m}" for m in metrics], [f"{STATION_Z_PREFIX}{m}" for m in metrics]


# Buckets this worker process wrote last, by group key: (revision written with it, the bucket). See _load.
_KEPT: dict[str, tuple[str, HealthBucket]] = {}


class StationHealthProcessor(StatefulProcessor):
    """One group per bucket of stations (see :class:`~citysense_scorer.health.bucket.HealthBucket`), plus the dead
    letters' group, which passes through. Per bucket and micro-batch: one state get, one update, one timer at the
    bucket's earliest offline deadline, and the forecast-history entries that changed (usually one: the current
    5-minute bucket; see :mod:`citysense_scorer.health.forecast_history`).

    The state value is ``<revision>\\n<bucket JSON, compressed>`` (:func:`encode_state`) with a fresh random revision
    per write, and the revision alone is stored again in a small state variable of its own. PySpark reuses its Python
    workers across micro-batches, so the worker keeps the bucket objects it wrote; when the stored revision is the one
    it wrote, the next batch takes the kept bucket instead of parsing the JSON and rebuilding every station's detectors
    (most of a station's cost per batch) - and without fetching the document at all: the JVM would read it from RocksDB
    and ship it over the state socket only for its first line. Anything else - another worker wrote it, a batch re-runs
    from an older state version (document and revision are committed together), the worker is new, a checkpoint from
    before the revision variable - reads the stored JSON, which is always complete."""

    def __init__(self, ctx: HealthContext, columns: Sequence[str], doubles: Sequence[str] = ()) -> None:
        self.ctx = ctx
        self.columns = list(columns)
        self.doubles = frozenset(doubles)  # output columns of type double (see _plain)
        self.metric_names = [m for m in ctx.metrics if m in self.columns]
        self.fault_columns, self.z_columns = verdict_names(self.metric_names)

    def init(self, handle: StatefulProcessorHandle) -> None:
        freeze_kept()
        self.handle = handle
        self.doc = handle.getValueState("health", StructType([StructField("doc", StringType(), True)]))
        self.revision = handle.getValueState("revision", StructType([StructField("revision", StringType(), True)]))
        # The forecast history, one entry per 5-minute bucket of event time (forecast_history). Checkpoints written
        # before it existed take the new state variable as it is (an empty map).
        self.history = handle.getMapState("forecast_history", StructType([StructField("bucket", LongType(), False)]),
                                          StructType([StructField("cells", StringType(), True)]))

    def _load(self, key: str) -> HealthBucket:
        # Taken out while the batch runs: a batch that fails half-way must not leave a half-updated bucket behind.
        kept = _KEPT.pop(key, None)
        if kept is not None and kept[1].ctx == self.ctx:
            current = self.revision.get()  # None when the key has no state yet
            if current and current[0] == kept[0]:
                return kept[1]
        stored = self.doc.get()
        _, body = split_state(stored[0] if stored else None)
        history = [(int(k[0]), str(v[0])) for k, v in self.history.iterator()] if body is not None else []
        try:
            return HealthBucket(self.ctx, state_json(body), history)
        # bad base64, zstd, zlib or JSON (document or history), or JSON of the wrong shape (a document the scorer
        # wrote is always complete; one damaged by hand or by a bug must not stop the stream either)
        except (ValueError, OSError, zlib.error, KeyError, TypeError, AttributeError, IndexError) as err:
            # Failing here would fail every micro-batch from now on: nothing would be scored any more. The bucket's
            # stations start learning afresh instead (baselines warm up again, open health alerts stay open), and
            # its stored history is deleted on the next save. Deterministic: a re-run makes the same choice.
            log.error("health state of %s cannot be read (%s: %s); its stations start learning afresh", key,
                      type(err).__name__, err)
            return HealthBucket(self.ctx, None, history)

    def _save(self, key: str, bucket: HealthBucket) -> None:
        revision = uuid.uuid4().hex
        self.doc.update((encode_state(revision, bucket.dump_json()),))
        self.revision.update((revision,))
        puts, gone = bucket.history_changes()
        for b, value in puts.items():
            self.history.updateValue((b,), (value,))
        for b in gone:
            self.history.removeKey((b,))
        _KEPT[key] = (revision, bucket)
        for old in list(self.handle.listTimers()):
            self.handle.deleteTimer(old)
        timer = bucket.next_timer()
        if timer is not None:
            self.handle.registerTimer(timer)

    def handleInputRows(self, key: Any, rows: Iterator[pd.DataFrame],
                        timerValues: TimerValues) -> Iterator[pd.DataFrame]:
        pdf = pd.concat(list(rows), ignore_index=True)
        if pdf.empty:
            return
        if key[0] == DEAD_LETTER_KEY:
            for name in (*self.fault_columns, *self.z_columns, "health_event"):
                pdf[name] = None
            yield _plain(pdf[self.columns])
            return
        # Arrow hands the worker naive timestamps (session time zone, UTC) or aware ones, depending on the path.
        # cache=False: the cache heuristic walks the column as Timestamp objects, for a cache that never pays off on
        # already-parsed timestamps.
        ts_ms = (pd.to_datetime(pdf["ts"], utc=True, cache=False).astype("datetime64[ms, UTC]").astype("int64")
                 .to_numpy())
        codes, stations = pd.factorize(pdf["station_id"])
        order = np.lexsort((pdf["seq"].to_numpy(), ts_ms, codes))  # by station, then event time
        pdf, ts_ms, codes = pdf.iloc[order].reset_index(drop=True), ts_ms[order], codes[order]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        batch = BatchColumns(
            stations=[str(stations[c]) for c in codes[np.concatenate(([0], bounds))]],
            starts=np.concatenate(([0], bounds)).astype(np.int64),
            ends=np.concatenate((bounds, [len(pdf)])).astype(np.int64), ts_ms=ts_ms,
            values=pdf[self.metric_names].to_numpy(dtype="float64"), names=self.metric_names,
            lat=pdf["lat"].to_numpy(dtype="float64"), lon=pdf["lon"].to_numpy(dtype="float64"))
        bucket = self._load(key[0])
        faults, zs, events = bucket.process_columns(batch, timerValues.getCurrentProcessingTimeInMs())
        self._save(key[0], bucket)
        # The verdict as plain columns: pandas hands them to Arrow as whole arrays (a per-row JSON or list column
        # costs a Python object per reading here and a parser per reading in the JVM).
        # The output frame is built in one go from the columns (assign + selection would insert the new columns one
        # by one).
        columns: dict[str, Any] = {name: faults[:, j] for j, name in enumerate(self.fault_columns)}
        columns.update({name: zs[:, j] for j, name in enumerate(self.z_columns)})
        columns["health_event"] = np.full(len(pdf), None, dtype=object)
        out = pd.DataFrame({name: columns[name] if name in columns else pdf[name] for name in self.columns},
                           copy=False)
        yield _plain(out, self.doubles)
        if events:
            yield self._event_rows(events)

    def handleExpiredTimer(self, key: Any, timerValues: TimerValues,
                           expiredTimerInfo: ExpiredTimerInfo) -> Iterator[pd.DataFrame]:
        if not str(key[0]).startswith(BUCKET_PREFIX):
            self.doc.clear()  # a per-station key of the layout before buckets: its station now lives in a bucket
            self.revision.clear()
            return
        bucket = self._load(key[0])
        events = bucket.expire(timerValues.getCurrentProcessingTimeInMs())
        self._save(key[0], bucket)
        if events:
            yield self._event_rows(events)

    def _event_rows(self, events: list[AlertEvent]) -> pd.DataFrame:
        out = pd.DataFrame({c: [None] * len(events) for c in self.columns})
        out["station_id"] = [e.station_id for e in events]
        out["health_event"] = [e.to_json().decode() for e in events]
        return _plain(out[self.columns])

    def close(self) -> None:
        pass


# A bucket's document goes to the JVM's state server on every write (and comes back whenever a worker has to read
# it), each a blocking round trip that pickles, copies and stores it (RocksDB and its changelog), for every bucket
# of every micro-batch, on the batch's critical path: the smaller the better. zstd at level 1 shrinks it several
# times for little CPU (zlib, which earlier versions wrote, is still read); base64 keeps the value an ASCII string
# (the state's schema, fixed by existing checkpoints, is a string column). A kept bucket is never decompressed.
ZSTD = "zs:"  # "zs:<document bytes>:<base64 zstd frame>" (pyarrow's zstd needs the size to decompress)
ZLIB = "z:"  # "z:<base64 zlib stream>", written by earlier versions
_ZSTD_LEVEL = 1


@functools.cache
def _zstd() -> Any:
    import pyarrow as pa

    return pa.Codec("zstd", compression_level=_ZSTD_LEVEL)


def encode_state(revision: str, document: bytes) -> str:
    """The stored value for a bucket document (JSON bytes) written under ``revision``."""
    packed = base64.b64encode(_zstd().compress(document, asbytes=True)).decode("ascii")
    return f"{revision}\n{ZSTD}{len(document)}:{packed}"


def split_state(value: str | None) -> tuple[str, str | None]:
    """(revision, body as stored) of a state value; also reads the layouts of earlier versions: plain JSON (no
    revision) and ``<revision>\\n<JSON>`` (uncompressed)."""
    if not value:
        return "", None
    if value.startswith("{"):
        return "", value
    revision, _, body = value.partition("\n")
    return revision, body


def state_json(body: str | None) -> bytes | str | None:
    """The bucket JSON of a stored body (see :func:`split_state`): zstd, zlib (earlier versions) or plain. Damaged
    bytes raise ValueError (base64, the size) or OSError (zstd) or zlib.error."""
    if body is None:
        return None
    if body.startswith(ZSTD):
        size, sep, packed = body[len(ZSTD):].partition(":")
        if not sep:
            raise ValueError("zstd state without its size")
        return _zstd().decompress(base64.b64decode(packed, validate=True), decompressed_size=int(size), asbytes=True)
    if body.startswith(ZLIB):
        return zlib.decompress(base64.b64decode(body[len(ZLIB):]))
    return body


def _plain(pdf: pd.DataFrame, doubles: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Columns pyspark 4.3's pandas->Arrow conversion of transformWithStateInPandas output chokes on become object
    columns: Arrow-backed extension columns (pandas 3 strings) and all-null columns (a string column whose values
    are all null arrives as float NaN and cannot be cast to a string array).

    Columns that cannot hold a null (bool, int) and float columns of ``doubles`` (output columns of type double,
    where NaN is how pandas spells null and Arrow reads it so) are not scanned: they are most of the columns, and
    this runs per bucket and micro-batch.

    The replacements go through ``assign`` (a new frame): callers pass a column selection, and writing into one makes
    pandas emit a SettingWithCopyWarning per column and group, which would flood the scorer's log."""
    plain: dict[str, pd.Series] = {}
    for name in pdf.columns:
        col = pdf[name]
        numpy = isinstance(col.dtype, np.dtype)  # not an extension dtype (those may hold pd.NA, e.g. Int64)
        if col.dtype == object or numpy and (col.dtype.kind in "biu" or col.dtype.kind == "f" and name in doubles):
            continue
        if len(col) and col.isna().all():
            plain[name] = pd.Series([None] * len(col), index=pdf.index, dtype=object)
        elif pd.api.types.is_extension_array_dtype(col.dtype) and not isinstance(col.dtype, pd.DatetimeTZDtype):
            plain[name] = col.astype(object)
    return pdf.assign(**plain) if plain else pdf


DEAD_LETTER_KEY = " dead letters"  # group keys no station id can be (a space is not allowed in station ids)
BUCKET_PREFIX = " bucket "
# No leading underscore in these names: pyspark rebuilds the groups with itertuples, which renames such fields.
PACKED = "packed_columns"  # a dead letter's columns the detectors do not read, as JSON (see attach_health)


def attach_health(scored: DataFrame, ctx: HealthContext) -> DataFrame:
    """The scored stream plus station-health columns and event rows (see the module docstring).

    Every row goes through the one stateful operator - readings keyed by their station's bucket, dead letters in one
    group of their own that passes through untouched - so the micro-batch reads Kafka once (two branches joined by a
    union would each read the source).

    Only what the detectors read crosses into Python as columns. PySpark 4.3 hands a transformWithStateInPandas group to
    Python row by row (``itertuples`` and a DataFrame rebuilt per group), so its cost grows with the number of columns.
    The other columns (Kafka position, dead-letter reason and payload) matter for dead letters alone, so only a dead
    letter carries them, as one JSON string (``to_json`` before, ``from_json`` after, both in the JVM); packed for every
    reading, that JSON would take much of the JVM's CPU. The verdict comes back as plain columns (see
    :meth:`StationHealthProcessor.handleInputRows`).
    """
    scored.sparkSession.conf.set("spark.sql.streaming.stateStore.providerClass", STATE_PROVIDER)
    # clock_ms too: the sink caps every reading's event time with it (engine watermark), not only dead letters'
    own = [c for c in ("station_id", "ts", "seq", "clock_ms", "lat", "lon", *ctx.metrics) if c in scored.columns]
    rest = [c for c in scored.columns if c not in own]
    fault_names, z_names = verdict_names([m for m in ctx.metrics if m in own])
    verdict = [*(StructField(name, BooleanType(), True) for name in fault_names),
               *(StructField(name, DoubleType(), True) for name in z_names)]
    inner = StructType([*(scored.schema[c] for c in own), StructField(PACKED, StringType(), True), *verdict,
                        StructField("health_event", StringType(), True)])
    bucket = F.concat(F.lit(BUCKET_PREFIX), F.pmod(F.xxhash64("station_id"), F.lit(ctx.buckets)).cast("string"))
    dead = F.col("station_id").isNull()
    key = F.when(dead, F.lit(DEAD_LETTER_KEY)).otherwise(bucket)
    packed = scored.select(key.alias("health_key"), *own, F.when(dead, F.to_json(F.struct(*rest))).alias(PACKED))
    out = packed.groupBy("health_key").transformWithStateInPandas(
        statefulProcessor=StationHealthProcessor(
            ctx, inner.fieldNames(), [f.name for f in inner.fields if isinstance(f.dataType, DoubleType)]),
        outputStructType=inner,
        outputMode="Append", timeMode="ProcessingTime")
    rest_schema = StructType([scored.schema[c] for c in rest])
    out = out.select(*own, F.from_json(PACKED, rest_schema).alias("_rest"), *(F.col(f"`{f.name}`") for f in verdict),
                     "health_event")
    return out.select(*(F.col(c) if c in own else F.col(f"_rest.{c}").alias(c) for c in scored.columns),
                      *(F.col(f"`{f.name}`") for f in verdict), "health_event")
