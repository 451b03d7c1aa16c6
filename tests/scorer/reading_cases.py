"""Readings every validator must classify the same way: the reference (contract + registry checks) and the
scorer's decoder (tests/scorer/source/test_decode.py). One row per case: name, raw value (None = null), expected
reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from citysense_common.contract import MAX_READING_BYTES, DeadLetterReason

R = DeadLetterReason
NOW = datetime.now(UTC)
TS = (NOW - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def doc(**over: object) -> bytes:
    base: dict[str, object] = {"schema_version": 1, "station_id": "st-1", "ts": TS, "seq": 3,
                               "metrics": {"pm2_5": 12.5, "temperature": 20}}
    for key, value in over.items():
        if value is ...:
            base.pop(key, None)
        else:
            base[key] = value
    return json.dumps(base).encode()


def raw(text: str) -> bytes:
    return text.encode()


FUTURE = (NOW + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
CASES: list[tuple[str, bytes | None, str | None]] = [
    ("valid", doc(), None),
    ("valid-location", doc(location={"lat": 52.5, "lon": 13.4}), None),
    ("valid-null-location", doc(location=None), None),
    ("valid-offset-tz", doc(ts="2026-01-01 00:00:00+01:00"), None),
    ("valid-no-seconds", doc(ts="2026-01-01T00:00Z"), None),
    ("valid-alias", doc(metrics={"particulate_matter": 30.0}), None),
    ("valid-int-values", doc(metrics={"pm10": 3}), None),
    ("valid-schema-1.0", doc(schema_version=1.0), None),
    ("valid-lat-string", doc(location={"lat": "52", "lon": 13}), None),
    ("valid-unix-ts", doc(ts=1700000000), None),
    ("empty", None, R.MALFORMED_JSON),
    ("malformed", raw('{"schema_version": 1,'), R.MALFORMED_JSON),
    ("bad-utf8", b'{"station_id": "\xff\xfe"}', R.MALFORMED_JSON),
    ("nan-token", raw('{"schema_version":1,"metrics":{"pm2_5":NaN}}'), R.NON_FINITE_VALUE),
    ("infinity-token", raw('{"seq": -Infinity}'), R.NON_FINITE_VALUE),
    ("huge-exponent", doc(metrics={"pm2_5": 1e400}).replace(b"Infinity", b"1e400"), R.NON_FINITE_VALUE),
    ("array", raw("[1, 2]"), R.NOT_AN_OBJECT),
    ("number", raw("42"), R.NOT_AN_OBJECT),
    ("string", raw('"hello"'), R.NOT_AN_OBJECT),
    ("too-large", doc(station_id="x" * (MAX_READING_BYTES + 10)), R.PAYLOAD_TOO_LARGE),
    ("schema-2", doc(schema_version=2), R.UNSUPPORTED_SCHEMA_VERSION),
    ("schema-string", doc(schema_version="1"), R.UNSUPPORTED_SCHEMA_VERSION),
    ("schema-bool", doc(schema_version=True), R.UNSUPPORTED_SCHEMA_VERSION),
    ("schema-missing", doc(schema_version=...), R.UNSUPPORTED_SCHEMA_VERSION),
    ("station-bad-chars", doc(station_id="st 1"), R.INVALID_STATION_ID),
    ("station-number", doc(station_id=7), R.INVALID_STATION_ID),
    ("station-missing", doc(station_id=...), R.INVALID_STATION_ID),
    ("station-too-long", doc(station_id="s" * 65), R.INVALID_STATION_ID),
    ("ts-no-zone", doc(ts="2026-01-01T00:00:00"), R.INVALID_TIMESTAMP),
    ("ts-garbage", doc(ts="yesterday"), R.INVALID_TIMESTAMP),
    ("ts-missing", doc(ts=...), R.INVALID_TIMESTAMP),
    ("ts-bad-month", doc(ts="2026-13-01T00:00:00Z"), R.INVALID_TIMESTAMP),
    ("seq-float", doc(seq=1.5), R.WRONG_TYPE),
    ("seq-float-integral", doc(seq=1.0), R.WRONG_TYPE),
    ("seq-string", doc(seq="1"), R.WRONG_TYPE),
    ("seq-bool", doc(seq=True), R.WRONG_TYPE),
    ("seq-negative", doc(seq=-1), R.SCHEMA_VIOLATION),
    ("seq-missing", doc(seq=...), R.SCHEMA_VIOLATION),
    ("metric-string", doc(metrics={"pm2_5": "12"}), R.WRONG_TYPE),
    ("metric-bool", doc(metrics={"pm2_5": True}), R.WRONG_TYPE),
    ("metric-null", doc(metrics={"pm2_5": None}), R.WRONG_TYPE),
    ("metric-object", doc(metrics={"pm2_5": {"v": 1}}), R.WRONG_TYPE),
    ("metrics-not-object", doc(metrics=[1, 2]), R.WRONG_TYPE),
    ("metrics-empty", doc(metrics={}), R.SCHEMA_VIOLATION),
    ("metrics-missing", doc(metrics=...), R.SCHEMA_VIOLATION),
    ("metric-bad-name", doc(metrics={"PM25": 1}), R.SCHEMA_VIOLATION),
    ("extra-field", doc(extra=1), R.SCHEMA_VIOLATION),
    ("location-not-object", doc(location="here"), R.WRONG_TYPE),
    ("location-lat-range", doc(location={"lat": 91, "lon": 0}), R.SCHEMA_VIOLATION),
    ("location-lat-bool", doc(location={"lat": True, "lon": 0}), R.WRONG_TYPE),
    ("location-lon-range", doc(location={"lat": 0, "lon": -181}), R.SCHEMA_VIOLATION),
    ("location-missing-lon", doc(location={"lat": 0}), R.SCHEMA_VIOLATION),
    ("location-extra", doc(location={"lat": 0, "lon": 0, "alt": 3}), R.SCHEMA_VIOLATION),
    ("location-lat-null", doc(location={"lat": None, "lon": 0}), R.WRONG_TYPE),
    ("alias-and-name", doc(metrics={"pm2_5": 1, "pm25": 2}), R.SCHEMA_VIOLATION),
    ("unknown-metric", doc(metrics={"radon": 1}), R.UNKNOWN_METRIC),
    ("out-of-range-high", doc(metrics={"pm2_5": 1000.5}), R.OUT_OF_RANGE),
    ("out-of-range-low", doc(metrics={"temperature": -51}), R.OUT_OF_RANGE),
    ("out-of-range-alias", doc(metrics={"particulate_matter": -1}), R.OUT_OF_RANGE),
    ("future", doc(ts=FUTURE), R.FUTURE_TIMESTAMP),
]
