"""Deterministic ids and event construction for the alerts raised by station health (faults, offline, forecast).

Same scheme as the threshold engine: ``alert_id`` is a content hash of station, rule and opening time, ``event_id``
a hash of the alert id, its event number and state, so replaying the same input yields the same ids.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity

_NS = uuid.UUID("2b0c7e1a-5d4f-4c39-9a1e-8f6d3c2b1a70")


def content_id(text: str) -> str:
    return str(uuid.uuid5(_NS, text))


def alert_id(station_id: str, rule_id: str, opened_ms: int) -> str:
    return content_id(f"{station_id}|{rule_id}|{opened_ms}")


def event_id(alert: str, number: int, state: AlertState) -> str:
    return content_id(f"{alert}|{number}|{state.value}")


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def build_event(*, alert: str, number: int, state: AlertState, kind: AlertKind, severity: Severity, rule_id: str,
                station_id: str, opened_ms: int, event_ms: int, message: str, metric: str | None = None,
                value: float | None = None, threshold: float | None = None, window: str | None = None,
                lat: float | None = None, lon: float | None = None) -> AlertEvent:
    location = Location(lat=lat, lon=lon) if lat is not None and lon is not None else None
    return AlertEvent(
        event_id=event_id(alert, number, state), alert_id=alert, state=state, kind=kind, severity=severity,
        rule_id=rule_id, station_id=station_id, location=location, metric=metric, value=value,
        threshold=threshold, window=window, opened_at=ms_to_dt(opened_ms), event_time=ms_to_dt(event_ms),
        resolved_at=ms_to_dt(event_ms) if state is AlertState.RESOLVED else None, message=message,
    )
