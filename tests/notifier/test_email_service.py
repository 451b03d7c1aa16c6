"""The notifier process with email on, against a real Kafka broker and a real SMTP server on loopback: a
confirmation request from the API's topic sends the double opt-in email; an episode at a covered station sends the
warning and its resolve the all-clear; a sensor fault sends nothing. Without CITYSENSE_SMTP_HOST it says email is
off."""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from datetime import UTC, datetime

from citysense_common.citizen.mail import MailRequest
from citysense_common.citizen.tokens import verify
from citysense_common.contract import AlertKind, AlertState, Severity
from confluent_kafka import Producer

from .test_email_channel import PUBLIC_URL, SECRET, alert, subscribe


def _wait_log(notifier, text: str, timeout: float = 90.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while text not in notifier.logs():
        assert time.monotonic() < deadline, f"{text!r} not in the log:\n{notifier.logs()}"
        time.sleep(0.1)


def test_confirmation_warning_and_all_clear_through_kafka(notifier, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    mail_topic = f"test.{uuid.uuid4().hex[:8]}.citizen-mail"
    notifier.start(CITYSENSE_SMTP_HOST="127.0.0.1", CITYSENSE_SMTP_PORT=str(server.port),
                   CITYSENSE_SMTP_SECURITY="none", CITYSENSE_SMTP_FROM_ADDRESS="alerts@air.example.org",
                   CITYSENSE_CITIZEN_SECRET=SECRET, CITYSENSE_CITIZEN_PUBLIC_URL=PUBLIC_URL,
                   CITYSENSE_CITIZEN_MAIL_TOPIC=mail_topic)
    _wait_log(notifier, f"email on: SMTP 127.0.0.1:{server.port} (none) from alerts@air.example.org")
    _wait_log(notifier, "notifier consuming")
    sub = subscribe(notifier.store, "anna@example.org", status="pending", language="en")
    producer = Producer({"bootstrap.servers": notifier.bootstrap})
    request = MailRequest(type="confirm", subscription_id=sub.id)
    producer.produce(mail_topic, key=request.key, value=request.encode())
    assert producer.flush(10) == 0
    (confirm,) = server.wait_for(1, timeout=60)
    assert confirm["To"] == "anna@example.org"
    token = re.search(r"/citizen/confirm\?token=(\S+)", confirm.get_body(("plain",)).get_content())
    assert token is not None and verify(token.group(1), "confirm", SECRET, datetime.now(UTC)) == sub.id
    assert notifier.wait_delivery(sub.id, "confirm", "delivered").event_type == "citysense.email.confirm"

    notifier.store.update_area_subscription(dataclasses.replace(sub, status="confirmed",
                                                                confirmed_at=datetime.now(UTC)))
    time.sleep(0.5)  # the confirmed list reloads every CITYSENSE_SUBSCRIPTIONS_REFRESH_S (0.2 s here)
    fault = alert(kind=AlertKind.SENSOR_FAULT, rule_id="sensor-frozen", alert_id="al-fault")
    opened = alert(severity=Severity.CRITICAL, alert_id="al-episode")
    notifier.publish(fault, opened)
    server.wait_for(2, timeout=60)
    assert server.messages[1]["Subject"] == "Air pollution (PM2.5): Very Unhealthy at station st-042"
    notifier.wait_delivery(sub.id, f"al-episode/{opened.event_id}", "delivered")
    resolved = alert(AlertState.RESOLVED, severity=Severity.CRITICAL, value=20.0, alert_id="al-episode")
    notifier.publish(resolved)
    server.wait_for(3, timeout=60)
    assert server.messages[2]["Subject"] == "All clear: Air pollution (PM2.5) at station st-042"
    assert [to for _, (to,) in server.envelopes] == ["anna@example.org"] * 3  # nothing about the sensor fault
    assert notifier.store.get_delivery(sub.id, f"al-fault/{fault.event_id}") is None


def test_without_an_smtp_host_email_is_off(notifier) -> None:  # noqa: ANN001
    notifier.start()
    _wait_log(notifier, "email off: CITYSENSE_SMTP_HOST is not set")
