"""Message contract v1: the JSON documents that travel on citysense's Kafka topics.

Every service validates and builds messages through these models, so the wire format is defined exactly once.
The JSON Schemas in ``contracts/`` are generated from here (``make contracts``) and a test fails on drift.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

SCHEMA_VERSION = 1
STATION_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
METRIC_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# Largest reading we accept; anything bigger is hostile or broken and is dead-lettered unparsed.
MAX_READING_BYTES = 64 * 1024
# A dead letter embeds at most this many bytes of the original value (see DeadLetter), so it always fits a Kafka
# message (worst case ~6x when every byte becomes a JSON escape: ~384 KiB, below the usual 1 MB limits).
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024

StationId = Annotated[str, StringConstraints(pattern=STATION_ID_PATTERN)]
MetricName = Annotated[str, StringConstraints(pattern=METRIC_NAME_PATTERN)]


def format_ts(ts: datetime) -> str:
    """RFC 3339 UTC with millisecond precision and a ``Z`` suffix, the one spelling citysense writes."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a time zone (RFC 3339), e.g. 2026-01-01T12:00:00Z")
    return value.astimezone(UTC)


def _no_boolean(value: Any, error_type: str, expected: str) -> Any:
    # bool is an int subclass (True == 1): in lax mode a JSON true would pass as version 1 or latitude 1.0.
    # Other lax spellings (a number in a string) stay accepted, as they always were.
    if isinstance(value, bool):
        raise PydanticCustomError(error_type, "expected {expected}, got {got}",
                                  {"expected": expected, "got": str(value).lower()})
    return value


class Location(BaseModel):
    """WGS 84 coordinates of a station."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False, description="latitude in degrees")
    lon: float = Field(ge=-180, le=180, allow_inf_nan=False, description="longitude in degrees")

    @field_validator("lat", "lon", mode="before")
    @classmethod
    def _not_a_boolean(cls, value: Any) -> Any:
        return _no_boolean(value, "float_type", "a number")


class Reading(BaseModel):
    """One station's measurements at one event time (topic ``citysense.readings``, key = station_id)."""

    model_config = ConfigDict(extra="forbid", title="citysense reading v1")

    schema_version: Literal[1] = Field(description="contract version; always 1 for this schema")
    station_id: StationId = Field(description="stable station identifier, [A-Za-z0-9._-]{1,64}")
    ts: datetime = Field(description="event time, RFC 3339 with a time zone (UTC recommended)")
    seq: int = Field(ge=0, strict=True, description="per-station sequence number, starting at 0")
    location: Location | None = Field(default=None, description="where the station is, optional")
    metrics: dict[MetricName, Annotated[float, Field(allow_inf_nan=False)]] = Field(
        min_length=1, description="metric name (see config/metrics.yaml) -> value in the metric's unit"
    )

    @field_validator("schema_version", mode="before")
    @classmethod
    def _version_not_a_boolean(cls, value: Any) -> Any:
        return _no_boolean(value, "literal_error", "the number 1")

    @field_validator("ts")
    @classmethod
    def _ts_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    def to_json(self) -> bytes:
        doc = self.model_dump(mode="json", exclude_none=True)
        doc["ts"] = format_ts(self.ts)
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


class DeadLetterReason(StrEnum):
    """Why a message was rejected. Codes are stable: dashboards and alerts key on them."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_OBJECT = "not_an_object"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    SCHEMA_VIOLATION = "schema_violation"
    INVALID_STATION_ID = "invalid_station_id"
    INVALID_TIMESTAMP = "invalid_timestamp"
    WRONG_TYPE = "wrong_type"
    NON_FINITE_VALUE = "non_finite_value"
    OUT_OF_RANGE = "out_of_range"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_METRIC = "unknown_metric"


class SourcePosition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)


class DeadLetter(BaseModel):
    """A rejected input message (topic ``citysense.readings.dlq``); nothing is dropped silently.

    ``payload`` holds the original value decoded as UTF-8 with replacement characters (U+FFFD for every byte that is
    not valid UTF-8), so a dead letter is always valid JSON. Only the first ``DEAD_LETTER_PAYLOAD_BYTES`` (64 KiB)
    of the value are embedded: a bigger value (e.g. a 1 MB hostile message) would make the dead letter itself too
    large for Kafka. ``payload_truncated`` says whether that happened; ``payload_size`` (bytes) and
    ``payload_sha256`` (hex) always describe the *whole* original value, so an operator can match a dead letter
    to the message on the input topic (also found by ``source``). Both are null when the value was null, and in
    dead letters written before they were added.
    """

    model_config = ConfigDict(extra="forbid", title="citysense dead letter v1")

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    detail: str = Field(description="human-readable explanation of what is wrong")
    payload: str = Field(description="the original message value (its first 65536 bytes), decoded as UTF-8 with "
                         "replacement characters")
    payload_truncated: bool = Field(default=False, description="true when payload holds only the first 65536 bytes")
    payload_size: int | None = Field(default=None, ge=0, description="size of the whole original value in bytes")
    payload_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                       description="SHA-256 of the whole original value, lowercase hex")
    key: str | None = Field(default=None, description="the original message key, if any")
    source: SourcePosition
    received_at: datetime

    def to_json(self) -> bytes:
        doc = self.model_dump(mode="json")
        doc["received_at"] = format_ts(self.received_at)
        return json.dumps(doc, separators=(",", ":")).encode()


class AlertState(StrEnum):
    OPEN = "open"
    UPDATE = "update"
    RESOLVED = "resolved"


class AlertKind(StrEnum):
    THRESHOLD = "threshold"
    OUTLIER = "outlier"
    SENSOR_FAULT = "sensor_fault"
    STATION_OFFLINE = "station_offline"
    FORECAST = "forecast"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertEvent(BaseModel):
    """An alert lifecycle event (topic ``citysense.alerts``, key = station_id)."""

    model_config = ConfigDict(extra="forbid", title="citysense alert event v1")

    schema_version: Literal[1] = 1
    event_id: str = Field(description="unique per event, stable when the same input is replayed")
    alert_id: str = Field(description="deterministic per station + rule + opening time")
    state: AlertState
    kind: AlertKind
    severity: Severity
    rule_id: str
    station_id: StationId
    location: Location | None = None
    metric: str | None = None
    value: float | None = Field(default=None, allow_inf_nan=False)
    threshold: float | None = Field(default=None, allow_inf_nan=False)
    window: str | None = Field(default=None, description="aggregation window, e.g. '1m', '24h'")
    opened_at: datetime
    event_time: datetime = Field(description="measurement time that caused this event")
    resolved_at: datetime | None = None
    message: str = Field(description="human-readable summary for citizens")

    @field_validator("opened_at", "event_time", "resolved_at")
    @classmethod
    def _times_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)

    def to_json(self) -> bytes:
        doc = self.model_dump(mode="json")
        for name in ("opened_at", "event_time", "resolved_at"):
            moment = getattr(self, name)
            doc[name] = None if moment is None else format_ts(moment)
        return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()


class ContractError(ValueError):
    """A message that does not satisfy the contract; ``reason`` is the dead-letter code."""

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def _reason_for(error: dict[str, Any]) -> DeadLetterReason:
    loc = tuple(error.get("loc", ()))
    kind = error.get("type", "")
    if loc[:1] == ("schema_version",):
        return DeadLetterReason.UNSUPPORTED_SCHEMA_VERSION
    if loc[:1] == ("station_id",):
        return DeadLetterReason.INVALID_STATION_ID
    if loc[:1] == ("ts",):
        return DeadLetterReason.INVALID_TIMESTAMP
    if kind == "finite_number":
        return DeadLetterReason.NON_FINITE_VALUE
    if kind in {"float_type", "float_parsing", "int_type", "int_parsing", "dict_type", "model_type", "string_type"}:
        return DeadLetterReason.WRONG_TYPE
    return DeadLetterReason.SCHEMA_VIOLATION


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "message"
    return f"{where}: {error.get('msg', 'invalid')}"


def _reject_constant(token: str) -> float:
    # Python's json accepts NaN/Infinity, which are not JSON; treat them as the non-finite values they are.
    raise ContractError(DeadLetterReason.NON_FINITE_VALUE, f"{token} is not a finite number")


def parse_reading(raw: bytes | str) -> Reading:
    """Parse and validate one wire message; raise :class:`ContractError` naming the first problem.

    This is the reference validator. The scorer applies the same rules in Spark SQL for speed, and the
    tests check both agree.
    """
    size = len(raw)
    if size > MAX_READING_BYTES:
        raise ContractError(
            DeadLetterReason.PAYLOAD_TOO_LARGE, f"message is {size} bytes; the limit is {MAX_READING_BYTES}"
        )
    try:
        doc = json.loads(raw, parse_constant=_reject_constant)
    except ContractError:
        raise
    except UnicodeDecodeError:
        raise ContractError(DeadLetterReason.MALFORMED_JSON, "not valid UTF-8") from None
    except ValueError as exc:
        raise ContractError(DeadLetterReason.MALFORMED_JSON, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ContractError(DeadLetterReason.NOT_AN_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
    metrics = doc.get("metrics")
    if isinstance(metrics, dict):
        for name, value in metrics.items():
            # bool is an int subclass in Python; a JSON true is not a measurement.
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ContractError(
                    DeadLetterReason.WRONG_TYPE, f"metrics.{name}: expected a number, got {json.dumps(value)[:40]}"
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ContractError(DeadLetterReason.NON_FINITE_VALUE, f"metrics.{name}: {value} is not finite")
    try:
        return Reading.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ContractError(_reason_for(first), _describe(first)) from None


def dead_letter(
    reason: DeadLetterReason,
    detail: str,
    payload: bytes | str | None,
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | str | None = None,
    received_at: datetime | None = None,
    payload_size: int | None = None,
    payload_sha256: str | None = None,
) -> DeadLetter:
    """Build a dead letter; ``payload`` is the original value (bytes are decoded with replacement characters).

    The embedded payload is cut to :data:`DEAD_LETTER_PAYLOAD_BYTES`. A caller that only has the head of a big value
    passes the whole value's ``payload_size`` and ``payload_sha256``; otherwise both are computed from ``payload``.
    """

    def text(value: bytes | str | None) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return value.decode("utf-8", errors="replace")

    raw = payload.encode("utf-8", errors="replace") if isinstance(payload, str) else payload
    head = b"" if raw is None else bytes(raw[:DEAD_LETTER_PAYLOAD_BYTES])
    if raw is not None:
        payload_size = len(raw) if payload_size is None else payload_size
        payload_sha256 = hashlib.sha256(raw).hexdigest() if payload_sha256 is None else payload_sha256
    truncated = payload_size is not None and len(head) < payload_size
    # A cut may split a multi-byte character: drop that incomplete tail instead of adding a replacement character.
    decoded = codecs.getincrementaldecoder("utf-8")(errors="replace").decode(head, final=not truncated)
    return DeadLetter(
        reason=reason,
        detail=detail,
        payload=decoded,
        payload_truncated=truncated,
        payload_size=payload_size,
        payload_sha256=payload_sha256,
        key=text(key),
        source=SourcePosition(topic=topic, partition=partition, offset=offset),
        received_at=received_at or datetime.now(UTC),
    )
