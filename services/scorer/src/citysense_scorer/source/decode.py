"""Decode and validate readings in the Spark task that reads them: Kafka message bytes -> one typed row each.

The decoder runs in a Python worker, ``mapInArrow`` right after Spark's Kafka source
(:mod:`citysense_scorer.source.frame`). Why here and not in Spark SQL: validating a JSON reading with SQL expressions
(``from_json`` with the contract schema, or a VARIANT per message, plus a check per rule) costs the JVM more CPU per
reading than this decoder needs, and here the rows go back to Spark typed (Arrow record batches), so Spark's share is
reading Kafka, moving columns, the station-health state and the micro-batch bookkeeping.

Two paths, one set of rules:
- the **fast path** accepts only the canonical shape (what the simulator and ordinary stations send: schema_version 1,
  a station id, an RFC 3339 timestamp with seconds, a non-negative integer seq, an optional {lat, lon}, known metric
  names or aliases with in-range numbers) and returns the decoded row;
- everything else goes through the **reference validator** (:func:`citysense_scorer.source.reference.validate_reading`,
  i.e. the contract's ``parse_reading`` plus registry checks), which either accepts it (an alias spelling, a
  ``"lat": "52"``, a Unix timestamp, ...) or names the dead-letter reason.
The fast path is an optimisation only: for every input it either declines or agrees with the reference exactly
(tests/scorer/source/test_decode.py checks both on a table of cases and on generated documents).

The registry scores (z, outliers, heat index) are computed later, in the sink (:mod:`citysense_scorer.alerts.scores`).

Whose clock says "future": the broker's. Each row's ``clock_ms`` is the moment its reading is judged against (and
the one the engine caps event time with, see :mod:`citysense_scorer.alerts.engine`):

- a ``LogAppendTime`` record (the readings topic as citysense creates it): its timestamp, the broker's append time.
  Nothing else counts, so a replay or a re-run after a crash decides exactly as the first run did;
- a ``CreateTime`` record (an existing topic created otherwise): the producer set its timestamp, and a gateway whose
  clock runs ahead would vouch for its own readings. It counts only up to the scorer's own clock when the record is
  decoded (processing time): min(record timestamp, now). Records from producers with sane clocks (the timestamp is
  in the past when the scorer reads it) decide as deterministically as append times; only a record stamped ahead of
  the scorer's clock is judged by the moment it is decoded, so a replay much later may accept a reading the live
  run rejected (docs/operations.md#clock-skew).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import orjson
import pyarrow as pa
from citysense_common.contract import (
    DEAD_LETTER_PAYLOAD_BYTES,
    MAX_READING_BYTES,
    STATION_ID_PATTERN,
    ContractError,
    DeadLetterReason,
)
from citysense_common.registry import Registry, parse_registry

from citysense_scorer.source.reference import validate_reading

R = DeadLetterReason
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)
TOP_LEVEL_FIELDS = frozenset({"schema_version", "station_id", "ts", "seq", "location", "metrics"})
_STATION_ID = re.compile(STATION_ID_PATTERN.removeprefix("^").removesuffix("$")).fullmatch
# The fast path's timestamp shape: seconds present, at most microseconds, 'Z' or a numeric offset. Other spellings
# pydantic accepts (no seconds, ' ' separator, nanoseconds, Unix numbers) take the reference path.
_FAST_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?(?:Z|[+-]\d{2}:\d{2})", re.ASCII).fullmatch
MAX_SEQ = 2**63 - 1  # Spark's LongType
LOG_APPEND_TIME = 1  # Kafka's timestamp type ids (Spark's ``timestampType``): 0 CreateTime, 1 LogAppendTime


@dataclass(frozen=True)
class DecodedRow:
    """One valid reading as the fast path and the reference both describe it (tests compare these)."""

    station_id: str
    ts_us: int
    seq: int
    lat: float | None
    lon: float | None
    values: tuple[float | None, ...]  # registry order


class Decoder:
    """Turns raw Kafka records into the scorer's typed rows (see :data:`decoded_arrow_schema`)."""

    def __init__(self, registry: Registry, future_tolerance_s: float) -> None:
        self.registry = registry
        self.names = list(registry.metrics)
        self.index = {wire: i for i, m in enumerate(registry.metrics.values()) for wire in (m.name, *m.aliases)}
        self.lo = [m.range.min for m in registry.metrics.values()]
        self.hi = [m.range.max for m in registry.metrics.values()]
        self.future_us = int(future_tolerance_s * 1_000_000)
        self.schema = decoded_arrow_schema(registry)

    # -- one message ---------------------------------------------------------------------------------------------
    def fast(self, raw: bytes, now_us: int) -> DecodedRow | None:
        """The decoded row when ``raw`` has the canonical shape and passes every rule; None means "ask the
        reference" (it may still be valid)."""
        if len(raw) > MAX_READING_BYTES:
            return None
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if type(doc) is not dict or not doc.keys() <= TOP_LEVEL_FIELDS:
            return None
        sv, sid, ts, seq = doc.get("schema_version"), doc.get("station_id"), doc.get("ts"), doc.get("seq")
        if type(sv) is not int or sv != 1 or type(sid) is not str or not _STATION_ID(sid):
            return None
        if type(ts) is not str or not _FAST_TS(ts) or type(seq) is not int or not 0 <= seq <= MAX_SEQ:
            return None
        metrics = doc.get("metrics")
        if type(metrics) is not dict or not metrics:
            return None
        values: list[float | None] = [None] * len(self.names)
        index, lo, hi = self.index, self.lo, self.hi
        for name, value in metrics.items():
            i = index.get(name)
            kind = type(value)
            if i is None or (kind is not float and kind is not int) or values[i] is not None:
                return None  # unknown name, not a number, or a name given twice (name + alias)
            try:
                number = float(value)
            except OverflowError:
                return None
            if not lo[i] <= number <= hi[i]:
                return None
            values[i] = number
        lat = lon = None
        if "location" in doc and (loc := doc["location"]) is not None:
            if type(loc) is not dict or len(loc) != 2:
                return None
            lat, lon = loc.get("lat"), loc.get("lon")
            if type(lat) not in (float, int) or type(lon) not in (float, int):
                return None
            lat, lon = float(lat), float(lon)
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                return None
        try:
            moment = datetime.fromisoformat(ts)
        except ValueError:
            return None
        ts_us = (moment - EPOCH) // ONE_US
        if ts_us > now_us + self.future_us:
            return None
        return DecodedRow(sid, ts_us, seq, lat, lon, tuple(values))

    def slow(self, raw: bytes | None, now_us: int) -> DecodedRow | tuple[str, str]:
        """The reference's verdict: the decoded row, or (reason, detail)."""
        if raw is None:
            return R.MALFORMED_JSON.value, "empty message (null value)"
        now = EPOCH + timedelta(microseconds=now_us)
        try:
            reading = validate_reading(raw, self.registry, now=now, future_tolerance_s=self.future_us / 1e6)
        except ContractError as exc:
            return exc.reason.value, exc.detail
        if reading.seq > MAX_SEQ:
            return R.SCHEMA_VIOLATION.value, f"seq: {reading.seq} is too large (the limit is 2^63 - 1)"
        loc = reading.location
        return DecodedRow(
            reading.station_id, (reading.ts - EPOCH) // ONE_US, reading.seq,
            None if loc is None else loc.lat, None if loc is None else loc.lon,
            tuple(reading.metrics.get(name) for name in self.names),
        )

    def decode_one(self, raw: bytes | None, now_us: int) -> DecodedRow | tuple[str, str]:
        return (raw is not None and self.fast(raw, now_us)) or self.slow(raw, now_us)

    # -- a record batch ------------------------------------------------------------------------------------------
    def decode_batch(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Raw Kafka columns (key, value, topic, partition, offset, timestamp_ms[, timestamp_type]) -> decoded
        columns. Without ``timestamp_type`` every record counts as ``CreateTime``."""
        n = batch.num_rows
        values = batch.column("value").to_pylist()
        clock_ms = self.clocks(batch)
        reason: list[str | None] = [None] * n
        detail: list[str | None] = [None] * n
        payload: list[bytes | None] = [None] * n
        payload_size: list[int | None] = [None] * n
        payload_sha256: list[str | None] = [None] * n
        sids: list[str | None] = [None] * n
        ts: list[int | None] = [None] * n
        seq: list[int | None] = [None] * n
        lat: list[float | None] = [None] * n
        lon: list[float | None] = [None] * n
        width = len(self.names)
        good_rows: list[int] = []
        good_values: list[tuple[float | None, ...]] = []
        fast = self.fast
        for i, raw in enumerate(values):
            now_us = int(clock_ms[i]) * 1000
            row = (raw is not None and fast(raw, now_us)) or self.slow(raw, now_us)
            if type(row) is tuple:
                reason[i], detail[i] = row
                if raw is not None:
                    # Only the head crosses into Spark (a hostile 1 MB value would make the dead letter too big for
                    # Kafka); size and hash describe the whole value (see contract.DeadLetter).
                    payload[i] = raw[:DEAD_LETTER_PAYLOAD_BYTES]
                    payload_size[i] = len(raw)
                    payload_sha256[i] = hashlib.sha256(raw).hexdigest()
                continue
            sids[i], ts[i], seq[i], lat[i], lon[i] = row.station_id, row.ts_us, row.seq, row.lat, row.lon
            good_rows.append(i)
            good_values.append(row.values)
        matrix = np.full((n, width), np.nan)
        if good_rows:
            matrix[good_rows] = np.array(good_values, dtype="float64").reshape(len(good_rows), width)  # None -> NaN
        key = batch.column("key")
        if pa.types.is_binary(key.type):
            key = pa.array([None if k is None else k.decode("utf-8", "replace") for k in key.to_pylist()], pa.string())
        columns: list[pa.Array] = [
            key, batch.column("topic"), batch.column("partition"), batch.column("offset"),
            batch.column("timestamp_ms"), pa.array(clock_ms, pa.int64()),
            pa.array(reason, pa.string()), pa.array(detail, pa.string()), pa.array(payload, pa.binary()),
            pa.array(payload_size, pa.int64()), pa.array(payload_sha256, pa.string()),
            pa.array(sids, pa.string()), pa.array(ts, pa.timestamp("us", tz="UTC")), pa.array(seq, pa.int64()),
            pa.array(lat, pa.float64()), pa.array(lon, pa.float64()),
        ]
        columns += [pa.array(matrix[:, j], pa.float64(), from_pandas=True) for j in range(width)]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    @staticmethod
    def clocks(batch: pa.RecordBatch) -> np.ndarray:
        """Per record, the moment its reading is judged against (ms): the broker's append time, or for a
        ``CreateTime`` record its timestamp but never later than the scorer's clock now (see the module docstring)."""
        stamps = batch.column("timestamp_ms").to_numpy(zero_copy_only=False)
        stamps = np.where(np.isnan(stamps), -1, stamps).astype(np.int64) if stamps.dtype.kind == "f" else \
            stamps.astype(np.int64)
        wall_ms = int(datetime.now(UTC).timestamp() * 1000)
        kinds = batch.column("timestamp_type").to_numpy(zero_copy_only=False) \
            if "timestamp_type" in batch.schema.names else np.zeros(len(stamps))
        appended = (kinds == LOG_APPEND_TIME) & (stamps > 0)
        return np.where(appended, stamps, np.where(stamps > 0, np.minimum(stamps, wall_ms), wall_ms))

    def decode_batches(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield self.decode_batch(batch)


def decoded_arrow_schema(registry: Registry) -> pa.Schema:
    """Columns of a decoded row: source position, dead-letter verdict and the reading."""
    names = list(registry.metrics)
    return pa.schema([
        ("key", pa.string()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
        ("timestamp_ms", pa.int64()), ("clock_ms", pa.int64()),
        ("reason", pa.string()), ("detail", pa.string()), ("payload", pa.binary()),
        ("payload_size", pa.int64()), ("payload_sha256", pa.string()),
        ("station_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("seq", pa.int64()),
        ("lat", pa.float64()), ("lon", pa.float64()),
        *[(n, pa.float64()) for n in names],
    ])


@lru_cache(maxsize=8)
def decoder_for(registry_json: str, future_tolerance_s: float) -> Decoder:
    """One decoder per Python worker and configuration (workers are reused across micro-batches)."""
    return Decoder(parse_registry(orjson.loads(registry_json)), future_tolerance_s)
