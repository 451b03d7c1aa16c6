"""The notifier against a real HTTP receiver: signatures, CloudEvents, matching, retries, dead letters, crashes."""

from __future__ import annotations

import dataclasses
import signal
import threading
import time

from citysense_common.contract import AlertState, Severity
from cloudevents.v1.http import from_http  # the SDK's HTTP binding (2.x path)
from standardwebhooks.webhooks import Webhook


def test_signed_cloudevent_reaches_matching_subscriber_only(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    wanted = notifier.subscribe(receiver.url, station_ids=["st-1"], min_severity="warning")
    other = notifier.subscribe(receiver.url, station_ids=["st-2"])
    notifier.start()
    event = event_factory("st-1")
    ignored = event_factory("st-1", severity=Severity.INFO)
    notifier.publish(ignored, event)
    (got,) = receiver.wait_for(1)
    # Verified with the reference library a subscriber would use.
    payload = Webhook(wanted.secret).verify(got.body, got.headers)
    assert payload["id"] == event.event_id
    ce = from_http(got.headers, got.body)
    assert ce["specversion"] == "1.0"
    assert ce["type"] == "io.citysense.alert.opened"
    assert ce["id"] == event.event_id
    assert ce["subject"] == "st-1"
    assert ce.data["alert_id"] == event.alert_id and ce.data["severity"] == "critical"
    assert got.headers["content-type"].startswith("application/cloudevents+json")
    delivery = notifier.wait_delivery(wanted.id, event.event_id, "delivered")
    assert delivery.webhook_id == got.headers["webhook-id"]
    assert delivery.attempts == 1 and delivery.last_status_code == 200
    assert notifier.store.get_delivery(other.id, event.event_id) is None
    assert notifier.store.get_delivery(wanted.id, ignored.event_id) is None


def test_geographic_filters(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    near = notifier.subscribe(receiver.url, point={"lat": 48.85, "lon": 2.35}, radius_m=1000)
    box = notifier.subscribe(receiver.url, bbox=[2.0, 48.0, 3.0, 49.0], states=["resolved"])
    notifier.start()
    inside_open = event_factory("a", lat=48.851, lon=2.351)
    far_open = event_factory("b", lat=48.95, lon=2.35)  # ~11 km north: in the box, outside the circle
    far_resolved = event_factory("b", state=AlertState.RESOLVED, lat=48.95, lon=2.35)
    notifier.publish(inside_open, far_open, far_resolved)
    notifier.wait_delivery(near.id, inside_open.event_id, "delivered")
    notifier.wait_delivery(box.id, far_resolved.event_id, "delivered")
    receiver.wait_for(2)
    assert notifier.store.get_delivery(near.id, far_open.event_id) is None
    assert notifier.store.get_delivery(box.id, far_open.event_id) is None
    types = sorted(from_http(r.headers, r.body)["type"] for r in receiver.requests)
    assert types == ["io.citysense.alert.opened", "io.citysense.alert.resolved"]


def test_retry_after_503_honours_retry_after(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    receiver.script[:] = [reply(503, {"Retry-After": "1"})]
    sub = notifier.subscribe(receiver.url)
    notifier.start()
    event = event_factory()
    notifier.publish(event)
    first, second = receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.at - first.at >= 0.9  # waited as told (Retry-After: 1), not the 0.2 s base backoff
    for got in (first, second):
        Webhook(sub.secret).verify(got.body, got.headers)
    delivery = notifier.wait_delivery(sub.id, event.event_id, "delivered")
    assert delivery.attempts == 2


def test_dead_letter_after_max_attempts(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    receiver.script[:] = [reply(500) for _ in range(10)]
    sub = notifier.subscribe(receiver.url)
    notifier.start(CITYSENSE_WEBHOOK_MAX_ATTEMPTS="3")
    event = event_factory()
    notifier.publish(event)
    dead = notifier.wait_delivery(sub.id, event.event_id, "dead")
    assert dead.attempts == 3
    assert dead.last_status_code == 500
    assert "gave up after 3 attempts" in (dead.last_error or "")
    assert len(receiver.requests) == 3


def test_delivery_time_ssrf_check_dead_letters_refused_url(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    # Stored directly (as if DNS changed after the API accepted it): the notifier must still refuse it.
    sub = notifier.subscribe(receiver.url)
    notifier.start(CITYSENSE_ENV="production")  # production allows no private networks by default
    event = event_factory()
    notifier.publish(event)
    dead = notifier.wait_delivery(sub.id, event.event_id, "dead")
    assert "loopback" in (dead.last_error or "")
    assert receiver.requests == []


def test_sigkill_mid_delivery_then_restart_redelivers_same_webhook_id(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    hold = threading.Event()
    receiver.script[:] = [reply(200, hold=hold)]  # the first request hangs: the notifier is mid-delivery
    sub = notifier.subscribe(receiver.url)
    first_proc = notifier.start()
    event = event_factory()
    notifier.publish(event)
    (first,) = receiver.wait_for(1)
    first_proc.send_signal(signal.SIGKILL)
    first_proc.wait(10)
    hold.set()
    assert notifier.store.get_delivery(sub.id, event.event_id).status == "pending"
    notifier.start()
    second = receiver.wait_for(2)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert Webhook(sub.secret).verify(second.body, second.headers)["id"] == event.event_id
    delivered = notifier.wait_delivery(sub.id, event.event_id, "delivered")
    assert delivered.webhook_id == first.headers["webhook-id"]


def test_failing_subscriber_does_not_delay_others(
    notifier, receiver, event_factory, reply, receiver_factory
) -> None:
    slow = receiver_factory()
    slow.script[:] = [reply(503, {"Retry-After": "30"})]
    failing = notifier.subscribe(slow.url)
    healthy = notifier.subscribe(receiver.url)
    notifier.start()
    events = [event_factory(f"s{i}") for i in range(3)]
    notifier.publish(*events)
    for event in events:
        notifier.wait_delivery(healthy.id, event.event_id, "delivered", timeout=20)
    retrying = [notifier.store.get_delivery(failing.id, e.event_id) for e in events]
    assert any(d is not None and d.status in ("retrying", "pending") for d in retrying)


def test_restart_honours_next_attempt_at(notifier, receiver, event_factory, reply) -> None:
    receiver.script[:] = [reply(503, {"Retry-After": "10"})]
    sub = notifier.subscribe(receiver.url)
    first_proc = notifier.start()
    event = event_factory()
    notifier.publish(event)
    receiver.wait_for(1)
    retrying = notifier.wait_delivery(sub.id, event.event_id, "retrying")
    first_proc.send_signal(signal.SIGTERM)  # a clean stop leaves the group at once: the restart is quick
    assert first_proc.wait(15) == 0
    notifier.start()  # replays the event (and anything parked) long before the retry is due
    second = receiver.wait_for(2, timeout=40)[1]
    due = retrying.next_attempt_at.timestamp()
    assert second.at >= due - 0.2, f"retried {due - second.at:.1f} s before next_attempt_at"
    assert notifier.wait_delivery(sub.id, event.event_id, "delivered").attempts == 2


def test_paused_subscription_holds_its_retries(notifier, receiver, event_factory, reply) -> None:
    receiver.script[:] = [reply(500)]
    sub = notifier.subscribe(receiver.url)
    notifier.start()
    event = event_factory()
    notifier.publish(event)
    notifier.wait_delivery(sub.id, event.event_id, "retrying")
    notifier.store.update_subscription(dataclasses.replace(sub, status="paused"))
    time.sleep(3)  # many backoff periods (base 0.2 s): a retry would have come and gone
    held = notifier.store.get_delivery(sub.id, event.event_id)
    assert held.status == "retrying", held
    assert len(receiver.received()) == 1
    notifier.store.update_subscription(dataclasses.replace(sub, status="active"))
    delivered = notifier.wait_delivery(sub.id, event.event_id, "delivered", timeout=20)
    assert delivered.attempts == 2
