"""Helpers shared by the backends: UTC/millisecond time handling and opaque cursors."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from citysense_common.store.base import InvalidCursor

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc(value: datetime) -> datetime:
    """Aware UTC, truncated to milliseconds.

    Both backends keep millisecond precision because Cassandra's ``timestamp`` type does; truncating here keeps
    the backends indistinguishable (an identity (station_id, ts, seq) means the same thing in both). Naive
    datetimes are taken to be UTC, as everywhere in citysense.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    else:
        value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def to_ms(value: datetime) -> int:
    # Hot path (every reading): integer arithmetic on the timedelta, no float rounding, no tz conversion.
    delta = (value if value.tzinfo is not None else value.replace(tzinfo=UTC)) - EPOCH
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def from_ms(value: int) -> datetime:
    return EPOCH + timedelta(milliseconds=value)


def opt_ms(value: datetime | None) -> int | None:
    return None if value is None else to_ms(value)


def opt_from_ms(value: int | None) -> datetime | None:
    return None if value is None else from_ms(value)


def day_of(value: datetime) -> date:
    """UTC calendar day: the Cassandra partition bucket of readings and alerts."""
    return utc(value).date()


def encode_cursor(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, required: tuple[str, ...]) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidCursor(f"malformed cursor: {exc}") from None
    if not isinstance(payload, dict) or any(key not in payload for key in required):
        raise InvalidCursor("malformed cursor")
    return payload


def in_bbox(lon: float | None, lat: float | None, bbox: tuple[float, float, float, float]) -> bool:
    """Inside (min_lon, min_lat, max_lon, max_lat), edges included; min_lon > max_lon crosses the antimeridian."""
    if lon is None or lat is None:
        return False
    min_lon, min_lat, max_lon, max_lat = bbox
    if not min_lat <= lat <= max_lat:
        return False
    if min_lon <= max_lon:
        return min_lon <= lon <= max_lon
    return lon >= min_lon or lon <= max_lon
