"""CloudEvents 1.0 structured-mode JSON bodies for alert events and test events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity, format_ts

CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
TEST_TYPE = "io.citysense.test"
_TYPES = {
    AlertState.OPEN: "io.citysense.alert.opened",
    AlertState.UPDATE: "io.citysense.alert.updated",
    AlertState.RESOLVED: "io.citysense.alert.resolved",
}


def event_type(event: AlertEvent) -> str:
    return _TYPES[event.state]


def encode(event: AlertEvent, ce_type: str, source: str) -> bytes:
    """The HTTP body; ``id`` is the alert event_id, so a receiver can de-duplicate across subscriptions too."""
    doc = {
        "specversion": "1.0",
        "id": event.event_id,
        "source": source,
        "type": ce_type,
        "subject": event.station_id,
        "time": format_ts(event.event_time),
        "datacontenttype": "application/json",
        "data": json.loads(event.to_json()),
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def test_event(event_id: str, subscription_id: str) -> AlertEvent:
    """The event ``POST /v1/subscriptions/{id}/test`` sends: shaped like a real alert so receivers can parse it."""
    now = datetime.now(UTC)
    return AlertEvent(
        event_id=event_id, alert_id=f"test-{subscription_id}", state=AlertState.OPEN, kind=AlertKind.THRESHOLD,
        severity=Severity.INFO, rule_id="citysense.test", station_id="citysense-test", opened_at=now,
        event_time=now, message="Test event from citysense: your webhook subscription receives and verifies events.",
    )
