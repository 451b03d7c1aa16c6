"""Readings parsed and checked in the JVM, as Spark column expressions (the real-time path's input).

The checks are the decoder's fast path (:meth:`citysense_scorer.source.decode.Decoder.fast`) written as Spark SQL:
the canonical shape only (schema_version 1, a station id, an RFC 3339 timestamp with seconds, a non-negative integer
seq, an optional {lat, lon}, known metric names or aliases with in-range numbers, nothing else at the top level),
judged against the broker's clock. A reading it accepts is one the reference validator accepts with the same values;
a reading in another spelling the reference still accepts (a Unix timestamp, ``"lat": "52"``) is left to the
micro-batch path, which stores it and dead-letters what is invalid. Tests hold the two to that on a table of cases
and on generated documents.
"""

from __future__ import annotations

from typing import Any

from citysense_common.contract import MAX_READING_BYTES, STATION_ID_PATTERN
from citysense_common.registry import Registry

TOP_LEVEL_FIELDS = ("schema_version", "station_id", "ts", "seq", "location", "metrics")
READING_SCHEMA = ("schema_version INT, station_id STRING, ts STRING, seq BIGINT, "
                  "location STRUCT<lat: DOUBLE, lon: DOUBLE>, metrics MAP<STRING, DOUBLE>")
_TS = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$"
# A JSON string right after the member name: Spark's parser reads any token (123, true) into a STRING field, while
# the contract wants a string. (Numbers are strict already: a DOUBLE or BIGINT field rejects strings and booleans.)
_STRING_MEMBER = r'"{name}"\s*:\s*"'
LOG_APPEND_TIME = 1


def reading_columns(raw: Any, registry: Registry, metrics: list[str], *, future_tolerance_s: float,
                    keep: tuple[str, ...] = ()) -> Any:
    """From Kafka source rows (``value``, ``timestamp``, ``timestampType``) to valid readings with columns
    station_id, ts_ms, clock_ms, lat, lon, values (one per name in ``metrics``, null when absent), plus the input
    columns named in ``keep``; invalid readings are dropped. ``raw`` is a DataFrame of Spark's Kafka source."""
    from pyspark.sql import functions as F

    allowed = {alias: m.name for m in registry.metrics.values() for alias in (m.name, *m.aliases)}
    bounds = {m.name: (m.range.min, m.range.max) for m in registry.metrics.values()}
    # Known names and aliases, each mapped to its canonical metric's range.
    lo = F.create_map(*[x for alias, name in allowed.items() for x in (F.lit(alias), F.lit(bounds[name][0]))])
    hi = F.create_map(*[x for alias, name in allowed.items() for x in (F.lit(alias), F.lit(bounds[name][1]))])
    canon = F.create_map(*[x for alias, name in allowed.items() for x in (F.lit(alias), F.lit(name))])

    text = F.col("value").cast("string")
    doc = F.from_json(text, READING_SCHEMA)
    clock_ms = F.when(F.col("timestampType") == LOG_APPEND_TIME, F.unix_millis("timestamp")).otherwise(
        F.least(F.unix_millis("timestamp"), F.unix_millis(F.current_timestamp())))
    parsed = raw.select(
        text.alias("text"), F.length(F.col("value")).alias("size"), doc.alias("r"),
        F.json_object_keys(text).alias("keys"), clock_ms.alias("clock_ms"), *keep)
    r = F.col("r")
    keys = F.col("keys")
    m = r["metrics"]
    names = F.map_keys(m)
    canonical_names = F.transform(names, lambda k: F.try_element_at(canon, k))
    ts_ms = F.unix_millis(F.try_to_timestamp(r["ts"]))
    loc = r["location"]
    location_ok = (
        F.when(~F.array_contains(keys, "location"), F.lit(True))
        .when(F.get_json_object("text", "$.location").isNull(), F.lit(True))  # "location": null
        .otherwise(
            loc.isNotNull() & loc["lat"].isNotNull() & loc["lon"].isNotNull()
            & (F.size(F.json_object_keys(F.get_json_object("text", "$.location"))) == 2)
            & loc["lat"].between(-90, 90) & loc["lon"].between(-180, 180)))
    valid = (
        (F.col("size") <= MAX_READING_BYTES) & r.isNotNull() & keys.isNotNull()
        & (F.size(F.array_except(keys, F.array(*map(F.lit, TOP_LEVEL_FIELDS)))) == 0)
        & (r["schema_version"] == 1)
        & r["station_id"].rlike(STATION_ID_PATTERN) & F.col("text").rlike(_STRING_MEMBER.format(name="station_id"))
        & r["ts"].rlike(_TS) & (r["seq"] >= 0)
        & (F.size(m) > 0)
        & F.forall(names, lambda k: F.try_element_at(canon, k).isNotNull())
        & (F.size(F.array_distinct(canonical_names)) == F.size(names))  # not a name and its alias together
        & F.forall(F.map_entries(m), lambda e: e["value"].isNotNull() & (e["value"] >= F.try_element_at(lo, e["key"]))
                   & (e["value"] <= F.try_element_at(hi, e["key"])))
        & location_ok
        & ts_ms.isNotNull() & (ts_ms <= F.col("clock_ms") + int(future_tolerance_s * 1000)))
    by_name = F.map_from_arrays(canonical_names, F.map_values(m))
    return parsed.where(valid).select(
        r["station_id"].alias("station_id"), ts_ms.alias("ts_ms"), F.col("clock_ms"),
        loc["lat"].alias("lat"), loc["lon"].alias("lon"),
        F.array(*[F.try_element_at(by_name, F.lit(name)) for name in metrics]).alias("values"), *keep)
