"""JVM validation agrees with the Python reference (parse_reading + registry checks) on a shared table of cases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from citysense_common.contract import MAX_READING_BYTES, ContractError, DeadLetterReason
from citysense_scorer.reference import validate_reading
from citysense_scorer.validation import heat_index_c, parse_and_validate, with_scores

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


def python_reason(payload: bytes | None, registry) -> str | None:
    try:
        validate_reading(payload if payload is not None else b"", registry, NOW)
    except ContractError as exc:
        return exc.reason.value
    return None


@pytest.fixture(scope="module")
def jvm_results(spark, registry) -> dict[str, tuple[str | None, str | None]]:
    rows = [(name.encode(), payload, "readings", 0, i, int(NOW.timestamp() * 1000)) for i, (name, payload, _) in enumerate(CASES)]
    df = spark.createDataFrame(rows, "key binary, value binary, topic string, partition int, offset long, "
                                     "timestamp_ms long")
    out = parse_and_validate(df, registry, future_tolerance_s=300).collect()
    return {row["key"]: (row["reason"], row["detail"]) for row in out}


@pytest.mark.parametrize(("name", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_jvm_and_reference_agree(name, payload, expected, jvm_results, registry) -> None:
    assert python_reason(payload, registry) == (expected.value if expected else None)
    jvm_reason, detail = jvm_results[name]
    assert jvm_reason == (expected.value if expected else None)
    assert (detail is None) == (expected is None)


def test_every_dead_letter_reason_is_covered() -> None:
    covered = {expected for _, _, expected in CASES if expected}
    assert covered == set(DeadLetterReason)


def test_valid_rows_are_normalised(spark, registry) -> None:
    payload = doc(metrics={"particulate_matter": 30.0, "temperature": 32.0, "humidity": 70.0},
                  location={"lat": 52.5, "lon": 13.4})
    df = spark.createDataFrame([(b"st-1", payload, "t", 1, 9, int(NOW.timestamp() * 1000))],
                               "key binary, value binary, topic string, partition int, offset long, timestamp_ms long")
    row = with_scores(parse_and_validate(df, registry, future_tolerance_s=300), registry, "city", 3.72).first()
    assert row["reason"] is None and row["payload"] is None
    assert row["station_id"] == "st-1" and row["seq"] == 3 and row["lat"] == 52.5
    assert row["pm2_5"] == 30.0 and row["pm10"] is None
    # z = (30 - 10) / 5 = 4 > 3.72: an outlier; temperature z = (32 - 10.3) / 7.5 = 2.89: not one.
    assert row["z_pm2_5"] == pytest.approx(4.0)
    assert row["z_temperature"] == pytest.approx((32 - 10.3) / 7.5)
    assert row["outliers"] == ["pm2_5"]
    assert row["heat_index"] == pytest.approx(heat_index_c(32.0, 70.0))


def test_heat_index_matches_nws_table() -> None:
    # NWS heat index chart: 90 °F at 70 % RH -> 106 °F; 80 °F at 40 % -> 80 °F.
    assert heat_index_c((90 - 32) * 5 / 9, 70) * 9 / 5 + 32 == pytest.approx(106, abs=1)
    assert heat_index_c((80 - 32) * 5 / 9, 40) * 9 / 5 + 32 == pytest.approx(80, abs=1)
