"""The notifier records every alert event it reads in the store (the scorer's real-time path writes only to Kafka):
the API serves such alerts with their newest state (the store contract tests that an older event never overwrites
a newer one)."""

from __future__ import annotations

import time
from datetime import timedelta

from citysense_common.contract import AlertState


def wait_alert(store, alert_id: str, state: str, timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.get_alert(alert_id)
        if record is not None and record.state == state:
            return record
        time.sleep(0.1)
    raise AssertionError(f"alert {alert_id} not {state} in the store after {timeout} s: {store.get_alert(alert_id)}")


def test_alert_events_become_store_records_without_a_subscriber(notifier, event_factory) -> None:  # noqa: ANN001
    notifier.start()
    opened = event_factory("st-rt")
    notifier.publish(opened)
    record = wait_alert(notifier.store, opened.alert_id, "active")
    assert (record.station_id, record.rule_id, record.severity) == ("st-rt", opened.rule_id, "critical")
    assert record.last_event_id == opened.event_id
    assert abs(record.opened_at - opened.opened_at) < timedelta(milliseconds=1)  # the store keeps milliseconds

    later = opened.event_time + timedelta(minutes=2)
    resolved = opened.model_copy(update={"event_id": opened.event_id + "-resolved", "state": AlertState.RESOLVED,
                                         "event_time": later, "resolved_at": later})
    notifier.publish(resolved)
    record = wait_alert(notifier.store, opened.alert_id, "resolved")
    assert record.last_event_id == resolved.event_id and record.resolved_at is not None
