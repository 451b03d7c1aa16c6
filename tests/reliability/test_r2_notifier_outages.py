"""R2: the notifier survives SIGKILL mid-delivery and a receiver that is down for a while; old deliveries die visibly.

Already covered in tests/notifier/test_delivery.py: one event, SIGKILL while the receiver holds the request, restart
-> redelivered with the same webhook-id; dead letter after max attempts. Added here:
- several alerts while the receiver is *down* (connection refused), the notifier SIGKILLed while it is retrying
  them, restarted, then the receiver comes back on the same port: every alert is delivered at least once, every
  request of one alert carries the same webhook-id (the one in the delivery log since the first attempt), and every
  delivery verifies with the subscription's secret;
- past ``webhook_max_age_s`` a delivery is dead-lettered (reason max age) and visible in the delivery log served by
  ``GET /v1/subscriptions/{id}/deliveries``.
"""

from __future__ import annotations

import importlib.util
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from citysense_common.testing.webhook_receiver import WebhookReceiver
from citysense_localstack.servers.net import free_port
from standardwebhooks.webhooks import Webhook

pytestmark = pytest.mark.slow

# Reuse the notifier suite's harness and event factory (one copy of that plumbing).
_spec = importlib.util.spec_from_file_location("notifier_fixtures",
                                               Path(__file__).resolve().parents[1] / "notifier" / "conftest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nf  # dataclasses look their module up there
_spec.loader.exec_module(nf)
notifier = nf.notifier  # the fixture (kafka_broker, unique_topics, tmp_path)


def wait_status(harness, sub_id: str, event_id: str, statuses: set[str], timeout: float = 60.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = harness.store.get_delivery(sub_id, event_id)
        if d is not None and d.status in statuses:
            return d
        time.sleep(0.1)
    raise AssertionError(f"delivery of {event_id} never reached {statuses}: "
                         f"{harness.store.get_delivery(sub_id, event_id)}\n{harness.logs()}")


def test_receiver_down_then_up_with_notifier_killed_meanwhile(notifier) -> None:  # noqa: ANN001
    port = free_port()  # nothing listens here yet: every attempt is refused
    sub = notifier.subscribe(f"http://127.0.0.1:{port}/hook")
    first = notifier.start(CITYSENSE_WEBHOOK_BACKOFF_MAX_S="1", CITYSENSE_WEBHOOK_MAX_ATTEMPTS="100")
    events = [nf.make_event(f"st-{i}") for i in range(5)]
    notifier.publish(*events)
    # Every alert has failed at least once (so it is retrying, its webhook-id in the log) before the kill.
    before = {}
    for event in events:
        d = wait_status(notifier, sub.id, event.event_id, {"retrying"})
        assert d.attempts >= 1 and d.last_status_code is None and d.last_error
        before[event.event_id] = d.webhook_id
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = notifier.start(CITYSENSE_WEBHOOK_BACKOFF_MAX_S="1", CITYSENSE_WEBHOOK_MAX_ATTEMPTS="100")
    time.sleep(3)  # down a while longer, with the restarted notifier retrying
    assert second.poll() is None
    receiver = WebhookReceiver(port=port)  # on the port the subscriber was given while nothing listened
    try:
        for event in events:
            delivered = wait_status(notifier, sub.id, event.event_id, {"delivered"}, timeout=60)
            assert delivered.webhook_id == before[event.event_id]
        by_event: dict[str, set[str]] = defaultdict(set)
        for got in receiver.requests:
            payload = Webhook(sub.secret).verify(got.body, got.headers)
            by_event[payload["id"]].add(got.headers["webhook-id"])
        assert set(by_event) == {e.event_id for e in events}  # each alert at least once, nothing else
        for event in events:
            assert by_event[event.event_id] == {before[event.event_id]}  # one webhook-id per alert, across restarts
    finally:
        receiver.close()


def test_past_max_age_is_dead_lettered_and_listed_by_the_api(notifier) -> None:  # noqa: ANN001
    from citysense_alert_api.app import create_app
    from citysense_alert_api.settings import build_settings
    from fastapi.testclient import TestClient

    port = free_port()  # never listens
    sub = notifier.subscribe(f"http://127.0.0.1:{port}/hook")
    notifier.start(CITYSENSE_WEBHOOK_MAX_AGE_S="3", CITYSENSE_WEBHOOK_MAX_ATTEMPTS="100",
                   CITYSENSE_WEBHOOK_BACKOFF_MAX_S="1")
    event = nf.make_event("st-old")
    notifier.publish(event)
    dead = wait_status(notifier, sub.id, event.event_id, {"dead"}, timeout=60)
    assert dead.attempts >= 2  # it kept trying until the age limit, not beyond
    assert "max age" in (dead.last_error or "")
    assert (dead.updated_at - dead.created_at).total_seconds() >= 3

    token = "r2-token-" + "x" * 24
    settings = build_settings(data_dir=Path(notifier.env["CITYSENSE_DATA_DIR"]),
                              kafka_bootstrap=notifier.bootstrap)
    with TestClient(create_app(settings, token, store=notifier.store)) as client:
        response = client.get(f"/v1/subscriptions/{sub.id}/deliveries",
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    listed = [d for d in items if d["event_id"] == event.event_id]
    assert len(listed) == 1
    assert listed[0]["status"] == "dead"
    assert listed[0]["webhook_id"] == dead.webhook_id
    assert "max age" in (listed[0].get("last_error") or "")
