"""Email delivery like the webhooks': one attempt, then the retry lane with backoff until delivered or dead, every
state in the delivery log. Against real SMTP servers on loopback: one that is down, one that refuses with 5xx, one
that comes back."""

from __future__ import annotations

import socket

from citysense_common.store import Store

from .test_email_channel import alert, rig, subscribe


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_server_that_is_down_is_retried_then_given_up(store: Store) -> None:
    r = rig(store, _free_port())  # nothing listens: every connection is refused
    sub = subscribe(store, "x@example.org")
    event = alert()
    assert r.alert(event) == [True]
    event_id = f"al-1/{event.event_id}"
    first = store.get_delivery(sub.id, event_id)
    assert first is not None and first.status == "retrying" and first.attempts == 1
    assert first.last_error is not None and "ConnectionRefused" in first.last_error
    assert first.next_attempt_at is not None
    (parked,) = r.parked
    assert (parked.subscription_id, parked.event_id, parked.event_type) == (sub.id, event_id,
                                                                         "citysense.email.warning")
    assert r.run(r.channel.deliverer.retry(parked))  # the retry lane: attempts 2 and 3, then dead (max 3)
    dead = store.get_delivery(sub.id, event_id)
    assert dead is not None and dead.status == "dead" and dead.attempts == 3
    assert dead.last_error is not None and dead.last_error.startswith("gave up after 3 attempts")
    assert r.metrics.email_dead.labels("max_attempts")._value.get() == 1
    assert r.metrics.email_attempts.labels("network_error")._value.get() == 3


def test_a_refusing_server_dead_letters_at_once(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(refuse="550 5.1.1 No such mailbox")
    r = rig(store, server.port)
    sub = subscribe(store, "gone@example.org")
    event = alert()
    assert r.alert(event) == [True]
    delivery = store.get_delivery(sub.id, f"al-1/{event.event_id}")
    assert delivery is not None and delivery.status == "dead" and delivery.attempts == 1
    assert delivery.last_status_code == 550 and delivery.last_error == "SMTP 550: 5.1.1 No such mailbox"
    assert r.parked == [] and r.metrics.email_dead.labels("refused")._value.get() == 1


def test_a_parked_email_goes_out_unchanged_once_the_server_is_back(store: Store, smtp_server) -> None:  # noqa: ANN001
    port = _free_port()
    r = rig(store, port)
    sub = subscribe(store, "x@example.org", language="de")
    event = alert()
    assert r.alert(event) == [True]
    (parked,) = r.parked
    server = smtp_server()
    r = rig(store, server.port)  # the same store and delivery log; the server now answers
    assert r.run(r.channel.deliverer.retry(parked))
    (message,) = server.wait_for(1)
    delivery = store.get_delivery(sub.id, f"al-1/{event.event_id}")
    assert delivery is not None and delivery.status == "delivered" and delivery.attempts == 2
    assert delivery.last_status_code == 250 and delivery.last_error is None
    assert message["Message-ID"] == f"<{delivery.webhook_id}@air.example.org>"
    assert message["Subject"].startswith("Luftverschmutzung (PM2,5)")
    # Replayed after it was settled: nothing is sent again.
    assert r.run(r.channel.deliverer.retry(parked))
    assert r.alert(event) == [True]
    assert len(server.messages) == 1


def test_a_parked_email_to_someone_who_unsubscribed_is_dropped(store: Store, smtp_server) -> None:  # noqa: ANN001
    r = rig(store, _free_port())
    sub = subscribe(store, "x@example.org")
    assert r.alert(alert()) == [True]
    (parked,) = r.parked
    assert store.delete_area_subscription(sub.id)
    server = smtp_server()
    r = rig(store, server.port)
    assert r.run(r.channel.deliverer.retry(parked))
    assert server.messages == []
