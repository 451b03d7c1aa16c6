"""Contract v1: what is accepted, what is rejected, and with which dead-letter reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from citysense_common.contract import (
    MAX_READING_BYTES,
    AlertEvent,
    ContractError,
    DeadLetterReason,
    Reading,
    dead_letter,
    format_ts,
    parse_reading,
)

VALID = {
    "schema_version": 1,
    "station_id": "st-0-00001",
    "ts": "2026-05-01T12:00:00.250Z",
    "seq": 7,
    "location": {"lat": 52.52, "lon": 13.405},
    "metrics": {"pm2_5": 12.5, "temperature": -3},
}


def doc(**changes: object) -> bytes:
    body = {**VALID, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_valid_reading_round_trips() -> None:
    reading = parse_reading(doc())
    assert reading.station_id == "st-0-00001"
    assert reading.ts == datetime(2026, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert reading.metrics == {"pm2_5": 12.5, "temperature": -3.0}
    assert parse_reading(reading.to_json()) == reading


def test_offset_timestamps_are_normalised_to_utc() -> None:
    reading = parse_reading(doc(ts="2026-05-01T14:00:00+02:00"))
    assert format_ts(reading.ts) == "2026-05-01T12:00:00.000Z"


def test_location_is_optional() -> None:
    assert parse_reading(doc(location=...)).location is None


def test_integer_coordinates_and_version_as_float_are_numbers() -> None:
    # JSON does not tell 52 from 52.0; the JSON Schema's "const": 1 accepts 1.0 as well
    reading = parse_reading(doc(schema_version=1.0, location={"lat": 52, "lon": -13}))
    assert (reading.schema_version, reading.location.lat, reading.location.lon) == (1, 52.0, -13.0)


@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        (b"{not json", DeadLetterReason.MALFORMED_JSON, "not valid JSON"),
        (b"\xff\xfe", DeadLetterReason.MALFORMED_JSON, "not valid JSON"),
        (b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT, "expected a JSON object, got list"),
        (doc(schema_version=2), DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION, "schema_version"),
        # True == 1 in Python: a JSON true must not pass as version 1 (found by R3 in CI)
        (doc(schema_version=True), DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION, "expected the number 1, got true"),
        (doc(station_id="has space"), DeadLetterReason.INVALID_STATION_ID, "station_id"),
        (doc(station_id="x" * 65), DeadLetterReason.INVALID_STATION_ID, "station_id"),
        (doc(station_id=""), DeadLetterReason.INVALID_STATION_ID, "station_id"),
        (doc(ts="2026-05-01T12:00:00"), DeadLetterReason.INVALID_TIMESTAMP, "time zone"),
        (doc(ts="yesterday"), DeadLetterReason.INVALID_TIMESTAMP, "ts"),
        (doc(seq=-1), DeadLetterReason.SCHEMA_VIOLATION, "seq"),
        (doc(seq="3"), DeadLetterReason.WRONG_TYPE, "seq"),
        (doc(metrics={"pm2_5": "12"}), DeadLetterReason.WRONG_TYPE, "metrics.pm2_5"),
        (doc(metrics={"pm2_5": True}), DeadLetterReason.WRONG_TYPE, "metrics.pm2_5"),
        (doc(metrics={"pm2_5": None}), DeadLetterReason.WRONG_TYPE, "metrics.pm2_5"),
        (doc(metrics={}), DeadLetterReason.SCHEMA_VIOLATION, "at least 1"),
        (doc(metrics=[1]), DeadLetterReason.WRONG_TYPE, "metrics"),
        (doc(metrics={"PM 2.5": 1}), DeadLetterReason.SCHEMA_VIOLATION, "metrics"),
        (doc(location={"lat": 91, "lon": 0}), DeadLetterReason.SCHEMA_VIOLATION, "location.lat"),
        (doc(location={"lat": True, "lon": 0}), DeadLetterReason.WRONG_TYPE, "location.lat"),
        (doc(location={"lat": 52, "lon": False}), DeadLetterReason.WRONG_TYPE, "expected a number, got false"),
        (doc(extra=1), DeadLetterReason.SCHEMA_VIOLATION, "extra"),
        (doc(station_id=...), DeadLetterReason.INVALID_STATION_ID, "Field required"),
        (b'{"schema_version":1,"station_id":"a","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"x":NaN}}',
         DeadLetterReason.NON_FINITE_VALUE, "NaN"),
        (b'{"schema_version":1,"station_id":"a","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"x":-Infinity}}',
         DeadLetterReason.NON_FINITE_VALUE, "Infinity"),
        (b'{"schema_version":1,"station_id":"a","ts":"2026-01-01T00:00:00Z","seq":1,"metrics":{"x":1e999}}',
         DeadLetterReason.NON_FINITE_VALUE, "not finite"),
    ],
)
def test_rejections_name_reason_and_place(raw: bytes, reason: DeadLetterReason, words: str) -> None:
    with pytest.raises(ContractError) as caught:
        parse_reading(raw)
    assert caught.value.reason is reason
    assert words in caught.value.detail


def test_oversized_payload_is_rejected_before_parsing() -> None:
    raw = b'{"pad":"' + b"x" * MAX_READING_BYTES + b'"}'
    with pytest.raises(ContractError) as caught:
        parse_reading(raw)
    assert caught.value.reason is DeadLetterReason.PAYLOAD_TOO_LARGE
    assert str(MAX_READING_BYTES) in caught.value.detail


def test_dead_letter_keeps_original_payload_and_position() -> None:
    letter = dead_letter(DeadLetterReason.MALFORMED_JSON, "bad", b"\xffabc", topic="t", partition=2, offset=9,
                         key=b"st-1")
    decoded = json.loads(letter.to_json())
    assert decoded["reason"] == "malformed_json"
    assert decoded["payload"] == "\ufffdabc"
    assert decoded["source"] == {"topic": "t", "partition": 2, "offset": 9}
    assert decoded["key"] == "st-1"
    assert decoded["received_at"].endswith("Z")


def test_reading_json_is_compact_and_utc() -> None:
    raw = Reading.model_validate(json.loads(doc())).to_json()
    assert b" " not in raw
    assert json.loads(raw)["ts"] == "2026-05-01T12:00:00.250Z"


def test_alert_event_serialises_times_as_rfc3339_utc() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    event = AlertEvent(event_id="e1", alert_id="a1", state="open", kind="threshold", severity="critical",
                       rule_id="pm25-1m", station_id="st-1", opened_at=now, event_time=now, message="m")
    decoded = json.loads(event.to_json())
    assert decoded["opened_at"] == "2026-05-01T12:00:00.000Z"
    assert decoded["resolved_at"] is None
