"""JVM-side parsing, validation, alias normalisation and per-reading scoring (Spark SQL expressions only).

The rules mirror :func:`citysense_scorer.reference.validate_reading` (``parse_reading`` + registry checks); a shared
table of cases in the tests keeps them in agreement. JSON is parsed once into a VARIANT (``try_parse_json``), then
every check inspects typed paths of it, so a bad message becomes a dead-letter row instead of failing the batch.

The first failing check names the reason, in the order ``parse_reading`` reports them: size, JSON, object, metric value
types, non-finite values, then model fields in declaration order (schema_version, station_id, ts, seq, location,
metrics), extra fields, and finally the registry checks (aliases, unknown metric, physical range, future time).
Known, documented difference: JSON objects are sorted by key inside a VARIANT, so when two *different* metric-level
problems occur in one message the JVM may name another one than Python would (both are still dead-lettered).
"""

from __future__ import annotations

from dataclasses import dataclass

from citysense_common.contract import (
    DEAD_LETTER_PAYLOAD_BYTES,
    MAX_READING_BYTES,
    METRIC_NAME_PATTERN,
    STATION_ID_PATTERN,
    DeadLetterReason,
)
from citysense_common.registry import Registry
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

R = DeadLetterReason
TOP_LEVEL_FIELDS = ("schema_version", "station_id", "ts", "seq", "location", "metrics")
# RFC 3339 / ISO 8601 date-time with an explicit zone, as pydantic accepts it (seconds optional, ' ' or 'T').
TS_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([Zz]|[+-]\d{2}:?\d{2})$"
NON_FINITE_TOKEN = r"[:\[,]\s*-?(NaN|Infinity)\s*[,}\]]"


@dataclass(frozen=True)
class MetricColumns:
    """Canonical metric names (registry order) and the wire names that map to each."""

    names: tuple[str, ...]
    wire_names: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, registry: Registry) -> MetricColumns:
        return cls(
            tuple(registry.metrics),
            {m.name: (m.name, *m.aliases) for m in registry.metrics.values()},
        )


def _sql_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _is_number(type_col: str) -> str:
    return f"({type_col} IN ('BIGINT', 'DOUBLE', 'FLOAT') OR {type_col} LIKE 'DECIMAL%')"


def parse_and_validate(raw: DataFrame, registry: Registry, *, future_tolerance_s: float) -> DataFrame:
    """Kafka rows (key, value, topic, partition, offset, timestamp_ms) -> one row per message with ``reason``
    (null when valid), ``detail``, for rejected rows ``payload`` (binary: the value's first
    ``DEAD_LETTER_PAYLOAD_BYTES``), ``payload_size`` and ``payload_sha256``, and for valid rows the normalised
    reading: station_id, ts, seq, lat, lon and one double column per registry metric (null when absent)."""
    cols = MetricColumns.of(registry)
    all_wire = [w for names in cols.wire_names.values() for w in names]
    known = "array(" + ", ".join(_sql_str(w) for w in all_wire) + ")"
    top = "array(" + ", ".join(_sql_str(f) for f in TOP_LEVEL_FIELDS) + ")"
    alias_cases = " ".join(
        f"WHEN k IN ({', '.join(_sql_str(w) for w in wires)}) THEN {_sql_str(name)}"
        for name, wires in cols.wire_names.items()
    )
    df = raw.selectExpr(
        "key", "value", "topic", "partition", "offset", "timestamp_ms",
        # A key that is not valid UTF-8 would make an invalid string (Arrow refuses it in the sink): replace.
        "make_valid_utf8(CAST(key AS STRING)) AS key_str",
        "CAST(value AS STRING) AS txt",
        "length(value) AS raw_len",
    ).selectExpr(
        "*",
        "CASE WHEN value IS NOT NULL AND length(value) <= " + str(MAX_READING_BYTES)
        + " AND is_valid_utf8(txt) THEN try_parse_json(txt) END AS v",
    ).selectExpr(
        "*",
        "try_variant_get(v, '$', 'map<string,variant>') AS obj",
    ).selectExpr(
        "*",
        "try_variant_get(obj['metrics'], '$', 'map<string,variant>') AS m",
        "CASE WHEN obj['schema_version'] IS NULL THEN NULL ELSE schema_of_variant(obj['schema_version']) END AS sv_t",
        "CASE WHEN obj['station_id'] IS NULL THEN NULL ELSE schema_of_variant(obj['station_id']) END AS sid_t",
        "CASE WHEN obj['ts'] IS NULL THEN NULL ELSE schema_of_variant(obj['ts']) END AS ts_t",
        "CASE WHEN obj['seq'] IS NULL THEN NULL ELSE schema_of_variant(obj['seq']) END AS seq_t",
        "CASE WHEN obj['location'] IS NULL THEN NULL ELSE schema_of_variant(obj['location']) END AS loc_t",
        "CASE WHEN obj['metrics'] IS NULL THEN NULL ELSE schema_of_variant(obj['metrics']) END AS met_t",
        "try_variant_get(obj['location'], '$', 'map<string,variant>') AS loc",
    ).selectExpr(
        "*",
        "transform_values(m, (k, x) -> schema_of_variant(x)) AS m_types",
        "transform_values(m, (k, x) -> try_variant_get(x, '$', 'double')) AS m_vals",
        "try_variant_get(obj['station_id'], '$', 'string') AS sid",
        "try_variant_get(obj['ts'], '$', 'string') AS ts_s",
        "try_variant_get(obj['seq'], '$', 'bigint') AS seq_v",
        "try_variant_get(obj['schema_version'], '$', 'double') AS sv_d",
        # pydantic's lax float accepts numbers, booleans and numeric strings for coordinates.
        "CASE WHEN loc['lat'] IS NULL THEN NULL ELSE try_variant_get(loc['lat'], '$', 'double') END AS lat_d",
        "CASE WHEN loc['lon'] IS NULL THEN NULL ELSE try_variant_get(loc['lon'], '$', 'double') END AS lon_d",
        "CASE WHEN loc['lat'] IS NULL THEN NULL ELSE schema_of_variant(loc['lat']) END AS lat_t",
        "CASE WHEN loc['lon'] IS NULL THEN NULL ELSE schema_of_variant(loc['lon']) END AS lon_t",
    ).selectExpr(
        "*",
        f"""CASE
          WHEN ts_t = 'STRING' AND ts_s RLIKE {_sql_str(TS_PATTERN)} THEN try_cast(regexp_replace(
            replace(ts_s, ' ', 'T'), '^([0-9-]{{10}}[Tt][0-9]{{2}}:[0-9]{{2}})([Zz+-])', '$1:00$2') AS TIMESTAMP)
          WHEN {_is_number('ts_t')} THEN CASE
            WHEN abs(try_variant_get(obj['ts'], '$', 'double')) > 2e10
              THEN timestamp_millis(try_cast(try_variant_get(obj['ts'], '$', 'double') AS BIGINT))
            ELSE timestamp_micros(try_cast(try_variant_get(obj['ts'], '$', 'double') * 1e6 AS BIGINT)) END
        END AS ts_v""",
        f"transform(map_keys(m), k -> CASE {alias_cases} ELSE k END) AS canon_keys",
    )
    reason = f"""CASE
      WHEN value IS NULL THEN '{R.MALFORMED_JSON}'
      WHEN raw_len > {MAX_READING_BYTES} THEN '{R.PAYLOAD_TOO_LARGE}'
      WHEN NOT is_valid_utf8(txt) THEN '{R.MALFORMED_JSON}'
      WHEN v IS NULL AND txt RLIKE {_sql_str(NON_FINITE_TOKEN)} THEN '{R.NON_FINITE_VALUE}'
      WHEN v IS NULL THEN '{R.MALFORMED_JSON}'
      WHEN obj IS NULL THEN '{R.NOT_AN_OBJECT}'
      WHEN exists(map_values(m_types), t -> NOT {_is_number('t')}) THEN '{R.WRONG_TYPE}'
      WHEN exists(map_values(m_vals), x -> isnan(x) OR abs(x) = double('Infinity')) THEN '{R.NON_FINITE_VALUE}'
      WHEN NOT coalesce(({_is_number('sv_t')} OR sv_t = 'BOOLEAN') AND sv_d = 1.0, false)
        THEN '{R.UNSUPPORTED_SCHEMA_VERSION}'
      WHEN sid_t IS DISTINCT FROM 'STRING' OR NOT sid RLIKE {_sql_str(STATION_ID_PATTERN)}
        THEN '{R.INVALID_STATION_ID}'
      WHEN ts_v IS NULL THEN '{R.INVALID_TIMESTAMP}'
      WHEN seq_t IS NULL THEN '{R.SCHEMA_VIOLATION}'
      WHEN seq_t <> 'BIGINT' THEN '{R.WRONG_TYPE}'
      WHEN seq_v < 0 THEN '{R.SCHEMA_VIOLATION}'
      WHEN loc_t IS NOT NULL AND loc_t <> 'VOID' AND loc IS NULL THEN '{R.WRONG_TYPE}'
      WHEN loc IS NOT NULL AND loc['lat'] IS NULL THEN '{R.SCHEMA_VIOLATION}'
      WHEN loc IS NOT NULL AND lat_d IS NULL THEN '{R.WRONG_TYPE}'
      WHEN loc IS NOT NULL AND NOT (lat_d BETWEEN -90 AND 90) THEN '{R.SCHEMA_VIOLATION}'
      WHEN loc IS NOT NULL AND loc['lon'] IS NULL THEN '{R.SCHEMA_VIOLATION}'
      WHEN loc IS NOT NULL AND lon_d IS NULL THEN '{R.WRONG_TYPE}'
      WHEN loc IS NOT NULL AND NOT (lon_d BETWEEN -180 AND 180) THEN '{R.SCHEMA_VIOLATION}'
      WHEN loc IS NOT NULL AND size(map_keys(loc)) > 2 THEN '{R.SCHEMA_VIOLATION}'
      WHEN met_t IS NULL THEN '{R.SCHEMA_VIOLATION}'
      WHEN m IS NULL THEN '{R.WRONG_TYPE}'
      WHEN size(m) = 0 THEN '{R.SCHEMA_VIOLATION}'
      WHEN exists(map_keys(m), k -> NOT k RLIKE {_sql_str(METRIC_NAME_PATTERN)}) THEN '{R.SCHEMA_VIOLATION}'
      WHEN exists(map_keys(obj), k -> NOT array_contains({top}, k)) THEN '{R.SCHEMA_VIOLATION}'
      WHEN size(array_distinct(canon_keys)) < size(canon_keys) THEN '{R.SCHEMA_VIOLATION}'
      WHEN exists(map_keys(m), k -> NOT array_contains({known}, k)) THEN '{R.UNKNOWN_METRIC}'
      {_range_checks(registry)}
      WHEN ts_v > timestamp_millis(timestamp_ms) + make_dt_interval(0, 0, 0, {float(future_tolerance_s)})
        THEN '{R.FUTURE_TIMESTAMP}'
    END"""
    detail = f"""CASE reason
      WHEN '{R.MALFORMED_JSON}' THEN CASE WHEN value IS NULL THEN 'empty message (null value)'
        WHEN NOT is_valid_utf8(txt) THEN 'not valid UTF-8' ELSE 'not valid JSON' END
      WHEN '{R.PAYLOAD_TOO_LARGE}' THEN concat('message is ', raw_len, ' bytes; the limit is {MAX_READING_BYTES}')
      WHEN '{R.NON_FINITE_VALUE}' THEN 'NaN or Infinity is not a finite number'
      WHEN '{R.NOT_AN_OBJECT}' THEN concat('expected a JSON object, got ', lower(schema_of_variant(v)))
      WHEN '{R.WRONG_TYPE}' THEN concat('wrong type: ', coalesce(
          try_element_at(map_keys(map_filter(m_types, (k, t) -> NOT {_is_number('t')})), 1),
          CASE WHEN seq_t <> 'BIGINT' THEN 'seq' END, CASE WHEN m IS NULL AND loc IS NOT NULL THEN 'metrics' END,
          'location'))
      WHEN '{R.UNSUPPORTED_SCHEMA_VERSION}' THEN 'schema_version: Input should be 1'
      WHEN '{R.INVALID_STATION_ID}' THEN 'station_id: must be a string matching {STATION_ID_PATTERN}'
      WHEN '{R.INVALID_TIMESTAMP}' THEN 'ts: must be an RFC 3339 timestamp with a time zone'
      WHEN '{R.SCHEMA_VIOLATION}' THEN 'does not match the reading schema (missing, extra, empty or out-of-bounds field)'
      WHEN '{R.UNKNOWN_METRIC}' THEN concat('unknown metric(s): ',
          array_join(filter(map_keys(m), k -> NOT array_contains({known}, k)), ', '))
      WHEN '{R.OUT_OF_RANGE}' THEN 'a metric value is outside its physical range (config/metrics.yaml)'
      WHEN '{R.FUTURE_TIMESTAMP}' THEN concat('ts ', ts_s, ' is more than {int(future_tolerance_s)} s in the future')
    END"""
    metric_cols = [
        "CASE WHEN reason IS NULL THEN coalesce("
        + ", ".join(f"m_vals[{_sql_str(w)}]" for w in cols.wire_names[name])
        + f") END AS `{name}`"
        for name in cols.names
    ]
    df = df.selectExpr("*", f"{reason} AS reason").selectExpr("*", f"{detail} AS detail")
    return df.selectExpr(
        "key_str AS key", "topic", "partition", "offset", "timestamp_ms", "reason", "detail",
        # Dead-letter rows carry the value's first bytes as BINARY (it may not be valid UTF-8: the sink decodes it
        # with replacement characters) plus the whole value's size and SHA-256 (see contract.DeadLetter).
        f"CASE WHEN reason IS NOT NULL THEN substring(value, 1, {DEAD_LETTER_PAYLOAD_BYTES}) END AS payload",
        "CASE WHEN reason IS NOT NULL THEN raw_len END AS payload_size",
        "CASE WHEN reason IS NOT NULL THEN sha2(value, 256) END AS payload_sha256",
        "CASE WHEN reason IS NULL THEN sid END AS station_id",
        "CASE WHEN reason IS NULL THEN ts_v END AS ts",
        "CASE WHEN reason IS NULL THEN seq_v END AS seq",
        "CASE WHEN reason IS NULL THEN lat_d END AS lat",
        "CASE WHEN reason IS NULL THEN lon_d END AS lon",
        *metric_cols,
    )


def _range_checks(registry: Registry) -> str:
    parts = []
    for metric in registry.metrics.values():
        wires = ", ".join(f"m_vals[{_sql_str(w)}]" for w in (metric.name, *metric.aliases))
        parts.append(
            f"WHEN coalesce({wires}) < {metric.range.min} OR coalesce({wires}) > {metric.range.max} "
            f"THEN '{R.OUT_OF_RANGE}'"
        )
    return "\n      ".join(parts)


def with_scores(df: DataFrame, registry: Registry, profile: str, z_bound: float) -> DataFrame:
    """Add z-score columns ``z_<metric>`` against the profile's distribution, an ``outliers`` array of metric names
    and the derived ``heat_index`` (°C, NWS Rothfusz regression; null without temperature and humidity)."""
    zs: list[Column] = []
    names: list[str] = []
    for metric in registry.metrics.values():
        dist = metric.profiles.get(profile)
        if dist is None:
            continue
        zs.append(((F.col(metric.name) - F.lit(dist.mean)) / F.lit(dist.std)).alias(f"z_{metric.name}"))
        names.append(metric.name)
    out = df.select("*", *zs)
    flags = [F.when(F.abs(F.col(f"z_{n}")) > F.lit(z_bound), F.lit(n)) for n in names]
    out = out.withColumn("outliers", F.filter(F.array(*flags), lambda x: x.isNotNull()) if flags else F.array())
    if "temperature" in registry.metrics and "humidity" in registry.metrics:
        out = out.withColumn("heat_index", F.expr(HEAT_INDEX_SQL))
    else:
        out = out.withColumn("heat_index", F.lit(None).cast("double"))
    return out


# NWS heat index (Rothfusz regression with the NWS adjustments), evaluated in °F and returned in °C.
# https://www.wpc.ncep.noaa.gov/html/heatindex_equation.shtml
HEAT_INDEX_SQL = """
CASE WHEN temperature IS NULL OR humidity IS NULL THEN NULL ELSE
  (aggregate(array(temperature * 9 / 5 + 32), double(0), (acc, t) ->
    CASE WHEN (0.5 * (t + 61.0 + (t - 68.0) * 1.2 + humidity * 0.094) + t) / 2 < 80
      THEN 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + humidity * 0.094)
      ELSE -42.379 + 2.04901523 * t + 10.14333127 * humidity - 0.22475541 * t * humidity
           - 0.00683783 * t * t - 0.05481717 * humidity * humidity + 0.00122874 * t * t * humidity
           + 0.00085282 * t * humidity * humidity - 0.00000199 * t * t * humidity * humidity
           - CASE WHEN humidity < 13 AND t BETWEEN 80 AND 112
               THEN ((13 - humidity) / 4) * sqrt((17 - abs(t - 95)) / 17) ELSE 0 END
           + CASE WHEN humidity > 85 AND t BETWEEN 80 AND 87
               THEN ((humidity - 85) / 10) * ((87 - t) / 5) ELSE 0 END
    END) - 32) * 5 / 9
END"""


def heat_index_c(temperature_c: float, humidity: float) -> float:
    """Python twin of :data:`HEAT_INDEX_SQL` (tests and the reference)."""
    t = temperature_c * 9 / 5 + 32
    simple = 0.5 * (t + 61.0 + (t - 68.0) * 1.2 + humidity * 0.094)
    if (simple + t) / 2 < 80:
        hi = simple
    else:
        hi = (-42.379 + 2.04901523 * t + 10.14333127 * humidity - 0.22475541 * t * humidity
              - 0.00683783 * t * t - 0.05481717 * humidity ** 2 + 0.00122874 * t * t * humidity
              + 0.00085282 * t * humidity ** 2 - 0.00000199 * t * t * humidity ** 2)
        if humidity < 13 and 80 <= t <= 112:
            hi -= ((13 - humidity) / 4) * ((17 - abs(t - 95)) / 17) ** 0.5
        if humidity > 85 and 80 <= t <= 87:
            hi += ((humidity - 85) / 10) * ((87 - t) / 5)
    return (hi - 32) * 5 / 9
