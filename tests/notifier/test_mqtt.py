"""Public alerts on MQTT: topics and retained states, against real mosquitto brokers on loopback.

The routing is checked on its own; the publisher against a broker (QoS 1, retained states, a broker that comes
late, a full queue, passwords); and the notifier process end to end with Kafka (only public alerts go out, and a
broker that never answers holds up no webhook).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity
from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.mqtt import MqttPublisher, messages_for
from citysense_notifier.settings import DEFAULT_MQTT_PUBLIC, NotifierSettings, build_settings
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {AlertKind.THRESHOLD: [Severity.WARNING, Severity.CRITICAL], AlertKind.FORECAST: [Severity.INFO]}


@dataclass
class Got:
    topic: str
    payload: bytes
    qos: int
    retain: bool

    def event(self) -> dict:
        return json.loads(self.payload)


class Subscriber:
    """A plain MQTT client that records what it receives (subscribed at QoS 1)."""

    def __init__(self, port: int, topic: str, username: str | None = None, password: str | None = None) -> None:
        self.messages: list[Got] = []
        self.cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        if username:
            self.client.username_pw_set(username, password)
        subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10), "subscription not acknowledged"

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append(Got(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, match: Callable[[Got], bool], timeout: float = 20.0) -> Got:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [m for m in self.messages if match(m)]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                assert left > 0, f"no matching message; got {[(m.topic, m.payload[:60]) for m in self.messages]}"
                self.cond.wait(left)

    def settle(self, seconds: float = 0.5) -> list[Got]:
        time.sleep(seconds)
        with self.cond:
            return list(self.messages)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int, topic: str = "citysense/#", **auth: str) -> Subscriber:
        made.append(Subscriber(port, topic, **auth))
        return made[-1]

    yield make
    for sub in made:
        sub.close()


@pytest.fixture
def publisher_factory() -> Iterator[Callable[..., MqttPublisher]]:
    made: list[MqttPublisher] = []

    def make(port: int, **settings: object) -> MqttPublisher:
        settings = {"mqtt_host": "127.0.0.1", "mqtt_reconnect_max_s": 1,
                    "mqtt_client_id": f"notifier-{uuid.uuid4().hex[:8]}", **settings}
        s = NotifierSettings(mqtt_port=port, **settings)
        made.append(MqttPublisher(s, NotifierMetrics()))
        made[-1].start()
        return made[-1]

    yield make
    for pub in made:
        pub.close(timeout=0)


def metric(publisher: MqttPublisher, name: str, **labels: str) -> float:
    return publisher.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_until(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.05)


def variant(event: AlertEvent, **changes: object) -> AlertEvent:
    return event.model_copy(update={"event_id": f"ev-{uuid.uuid4().hex}", **changes})


# Routing: which topics an event reaches.

def test_a_public_alert_goes_to_its_area_and_its_station(event_factory) -> None:
    event = event_factory("st-1", lat=42.6, lon=-5.6)
    messages, skipped = messages_for(event, "citysense", PUBLIC)
    assert skipped is None
    area, station = messages
    assert (area.topic, area.retain) == ("citysense/alerts/ezs42/critical", False)
    assert (station.topic, station.retain) == ("citysense/stations/st-1/alert/pm25_1m_critical", True)
    assert area.payload == station.payload == event.to_json()
    assert AlertEvent.model_validate_json(area.payload).event_id == event.event_id


def test_kinds_and_severities_that_are_not_public(event_factory) -> None:
    fault = variant(event_factory(), kind=AlertKind.SENSOR_FAULT)
    assert messages_for(fault, "citysense", PUBLIC) == ([], "not_public")
    resolved_fault = variant(fault, state=AlertState.RESOLVED)
    assert messages_for(resolved_fault, "citysense", PUBLIC) == ([], "not_public")
    opened_below = event_factory(severity=Severity.INFO)
    assert messages_for(opened_below, "citysense", PUBLIC) == ([], "not_public")


def test_an_alert_lowered_below_the_public_levels_ends_its_retained_state(event_factory) -> None:
    lowered = variant(event_factory(lat=42.6, lon=-5.6), state=AlertState.UPDATE, severity=Severity.INFO)
    (area, station), _ = messages_for(lowered, "city/air", PUBLIC)
    assert area.topic == "city/air/alerts/ezs42/info" and area.payload == lowered.to_json()
    assert station.topic == "city/air/stations/st-1/alert/pm25_1m_critical"
    assert station.retain and station.payload == b""


def test_a_resolve_clears_the_retained_state(event_factory) -> None:
    resolved = variant(event_factory(), state=AlertState.RESOLVED)
    (area, station), _ = messages_for(resolved, "citysense", PUBLIC)
    assert not area.retain and area.payload == resolved.to_json()
    assert station.retain and station.payload == b""


def test_a_station_without_location_has_no_area_topic(event_factory) -> None:
    event = variant(event_factory(), location=None)
    (station,), skipped = messages_for(event, "citysense", PUBLIC)
    assert skipped == "no_location" and station.retain


def test_topic_levels_hold_no_separators_or_wildcards(event_factory) -> None:
    event = variant(event_factory(), rule_id="pm/25+#")
    (_, station), _ = messages_for(event, "citysense", PUBLIC)
    assert station.topic == "citysense/stations/st-1/alert/pm_25__"


# Settings.

def test_mqtt_is_off_without_a_host_and_public_kinds_match_the_cap_feed() -> None:
    settings = build_settings()
    assert settings.mqtt_host is None
    cap = yaml.safe_load((REPO / "config" / "cap.yaml").read_text(encoding="utf-8"))
    assert {k.value: [s.value for s in v] for k, v in DEFAULT_MQTT_PUBLIC.items()} == cap["public"]
    assert settings.mqtt_public == DEFAULT_MQTT_PUBLIC


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_MQTT_HOST", "mqtt.example.org")
    monkeypatch.setenv("CITYSENSE_MQTT_TLS", "true")
    monkeypatch.setenv("CITYSENSE_MQTT_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("CITYSENSE_MQTT_PUBLIC", '{"threshold": ["critical"]}')
    settings = build_settings()
    assert settings.mqtt_port_or_default == 8883
    assert settings.mqtt_public == {AlertKind.THRESHOLD: [Severity.CRITICAL]}
    assert "hunter2-secret" not in repr(settings) and "hunter2-secret" not in str(settings.model_dump())
    monkeypatch.setenv("CITYSENSE_MQTT_TOPIC_PREFIX", "city/+/alerts")
    with pytest.raises(ValueError, match="CITYSENSE_MQTT_TOPIC_PREFIX"):
        build_settings()


# The publisher against a real broker.

def test_open_update_and_resolve_on_a_real_broker(mosquitto, subscribe, publisher_factory, event_factory) -> None:
    live = subscribe(mosquitto.port)
    publisher = publisher_factory(mosquitto.port)
    opened = event_factory("st-a", lat=42.6, lon=-5.6)
    publisher.publish(opened)
    got = live.wait_for(lambda m: m.topic == "citysense/alerts/ezs42/critical")
    assert got.qos == 1 and not got.retain and got.event()["event_id"] == opened.event_id

    state_topic = "citysense/stations/st-a/alert/pm25_1m_critical"
    late = subscribe(mosquitto.port, state_topic)
    got = late.wait_for(lambda m: m.topic == state_topic)
    assert got.retain and got.qos == 1 and got.event()["event_id"] == opened.event_id

    raised = variant(opened, state=AlertState.UPDATE, severity=Severity.WARNING)
    publisher.publish(raised)
    wait_until(lambda: metric(publisher, "citysense_notifier_mqtt_published_total", topic="station") == 2,
               what="the second state acknowledged")
    later = subscribe(mosquitto.port, state_topic)
    assert later.wait_for(lambda m: m.event()["event_id"] == raised.event_id).retain

    resolved = variant(opened, state=AlertState.RESOLVED, severity=Severity.WARNING)
    publisher.publish(resolved)
    live.wait_for(lambda m: m.topic == "citysense/alerts/ezs42/warning" and
                  m.event()["event_id"] == resolved.event_id)
    assert late.wait_for(lambda m: m.payload == b"").topic == state_topic  # current subscribers see the clear
    wait_until(lambda: metric(publisher, "citysense_notifier_mqtt_published_total", topic="station") == 3,
               what="three state messages acknowledged")
    assert subscribe(mosquitto.port, "citysense/stations/#").settle() == []  # nothing retained any more
    wait_until(lambda: metric(publisher, "citysense_notifier_mqtt_published_total", topic="area") == 3,
               what="three area events acknowledged")
    assert metric(publisher, "citysense_notifier_mqtt_queued") == 0


def test_alerts_wait_for_a_broker_that_comes_late(mosquitto_factory, subscribe, publisher_factory,
                                                  event_factory) -> None:
    broker = mosquitto_factory(start=False)
    publisher = publisher_factory(broker.port)
    a = event_factory("st-a")
    b = event_factory("st-b")
    publisher.publish(a)
    publisher.publish(variant(a, state=AlertState.UPDATE, severity=Severity.WARNING))
    publisher.publish(variant(a, state=AlertState.RESOLVED, severity=Severity.WARNING))
    publisher.publish(b)
    wait_until(lambda: metric(publisher, "citysense_notifier_mqtt_connect_failures_total") >= 1,
               what="a failed connection attempt")
    assert metric(publisher, "citysense_notifier_mqtt_connected") == 0
    broker.start()
    wait_until(lambda: metric(publisher, "citysense_notifier_mqtt_queued") == 0, what="the queue drained")
    assert metric(publisher, "citysense_notifier_mqtt_connected") == 1
    assert metric(publisher, "citysense_notifier_mqtt_published_total", topic="area") == 4
    retained = subscribe(broker.port, "citysense/stations/#").settle()
    # st-a's three states waited as one (its resolve): only st-b's open alert is retained.
    assert [(m.topic, m.event()["event_id"]) for m in retained] == [
        ("citysense/stations/st-b/alert/pm25_1m_critical", b.event_id)]


def test_a_full_queue_drops_the_oldest_area_events_and_keeps_the_newest_states(event_factory) -> None:
    # Not started: nothing leaves the queue, as while the broker is away and the client holds its window.
    settings = NotifierSettings(mqtt_host="127.0.0.1", mqtt_port=1, mqtt_max_queued=3)
    publisher = MqttPublisher(settings, NotifierMetrics())
    events = [event_factory(f"st-{i}") for i in range(5)]
    for event in events:
        publisher.publish(event)
    assert metric(publisher, "citysense_notifier_mqtt_dropped_total", topic="area", reason="queue_full") == 2
    assert [m.payload for m in publisher._events] == [e.to_json() for e in events[2:]]
    # States: the queue is full of other stations' ones, so a new station's state is dropped, while a newer state
    # of a station already waiting replaces its older one.
    assert metric(publisher, "citysense_notifier_mqtt_dropped_total", topic="station", reason="queue_full") == 2
    resolved = variant(events[0], state=AlertState.RESOLVED)
    publisher.publish(resolved)
    assert publisher._states["citysense/stations/st-0/alert/pm25_1m_critical"] == b""
    assert metric(publisher, "citysense_notifier_mqtt_queued") == 6
    publisher.close(timeout=0)
    assert metric(publisher, "citysense_notifier_mqtt_dropped_total", topic="area", reason="shutdown") == 3
    assert metric(publisher, "citysense_notifier_mqtt_dropped_total", topic="station", reason="shutdown") == 3
    assert metric(publisher, "citysense_notifier_mqtt_queued") == 0


def test_username_and_password(mosquitto_factory, subscribe, publisher_factory, event_factory,
                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    users = {"citysense": "right-password", "display": "display-password"}
    broker = mosquitto_factory(users=users)
    watcher = subscribe(broker.port, "citysense/#", username="display", password=users["display"])
    wrong = publisher_factory(broker.port, mqtt_username="citysense", mqtt_password=users["display"])
    wrong.publish(event_factory("st-wrong"))
    wait_until(lambda: metric(wrong, "citysense_notifier_mqtt_connect_failures_total") >= 1,
               what="a refused connection")
    assert metric(wrong, "citysense_notifier_mqtt_connected") == 0
    right = publisher_factory(broker.port, mqtt_username="citysense", mqtt_password=users["citysense"])
    event = event_factory("st-right")
    right.publish(event)
    assert watcher.wait_for(lambda m: not m.retain).event()["event_id"] == event.event_id
    assert all(m.event()["station_id"] == "st-right" for m in watcher.settle())
    assert not any(password in caplog.text for password in users.values())
    assert "refused the connection" in caplog.text


def test_tls_verifies_the_broker(mosquitto_factory, subscribe, publisher_factory, event_factory) -> None:
    broker = mosquitto_factory(tls=True)
    watcher = subscribe(broker.port, "citysense/#")  # the plain listener
    untrusted = publisher_factory(broker.tls_port, mqtt_tls=True)  # the system's CAs do not know the test CA
    untrusted.publish(event_factory("st-untrusted"))
    # By name: the certificate is for localhost (and 127.0.0.1), and the host name is checked.
    trusted = publisher_factory(broker.tls_port, mqtt_host="localhost", mqtt_tls=True, mqtt_ca_file=broker.ca_file)
    event = event_factory("st-trusted")
    trusted.publish(event)
    assert watcher.wait_for(lambda m: not m.retain).event()["event_id"] == event.event_id
    # A client may publish before the broker's CONNACK reaches it, so the gauge can follow the message.
    wait_until(lambda: metric(trusted, "citysense_notifier_mqtt_connected") == 1, what="connected")
    wait_until(lambda: metric(untrusted, "citysense_notifier_mqtt_connect_failures_total") >= 1,
               what="a failed TLS handshake")
    assert metric(untrusted, "citysense_notifier_mqtt_connected") == 0
    assert all(m.event()["station_id"] == "st-trusted" for m in watcher.settle())


# The notifier process, with Kafka.

def test_the_notifier_publishes_public_alerts_only(notifier, mosquitto, subscribe, event_factory) -> None:
    watcher = subscribe(mosquitto.port, "citysense/#")
    notifier.start(CITYSENSE_MQTT_HOST="127.0.0.1", CITYSENSE_MQTT_PORT=str(mosquitto.port))
    fault = variant(event_factory("st-faulty"), kind=AlertKind.SENSOR_FAULT)
    public = event_factory("st-public", lat=48.85, lon=2.35)
    notifier.publish(fault, public)
    got = watcher.wait_for(lambda m: m.topic == "citysense/alerts/u09tv/critical", timeout=60)
    assert got.qos == 1 and got.event()["event_id"] == public.event_id
    watcher.wait_for(lambda m: m.topic == "citysense/stations/st-public/alert/pm25_1m_critical")
    assert all("st-faulty" not in m.topic for m in watcher.settle(1.0)), notifier.logs()


def test_a_broker_that_never_answers_holds_up_no_webhook(notifier, receiver, event_factory) -> None:
    # Accepts TCP connections and never sends a CONNACK; with 2 events allowed in flight, events that waited for
    # the broker would stop consumption after the second one.
    hanging = socket.create_server(("127.0.0.1", 0))
    try:
        notifier.subscribe(receiver.url)
        notifier.start(CITYSENSE_MQTT_HOST="127.0.0.1", CITYSENSE_MQTT_PORT=str(hanging.getsockname()[1]),
                       CITYSENSE_NOTIFIER_MAX_IN_FLIGHT="2")
        events = [event_factory(f"st-{i}") for i in range(6)]
        notifier.publish(events[0])
        receiver.wait_for(1, timeout=60)
        started = time.monotonic()
        for event in events[1:]:
            notifier.publish(event)
        got = receiver.wait_for(6, timeout=10)
        assert {r.payload["id"] for r in got} == {e.event_id for e in events}
        assert time.monotonic() - started < 10
    finally:
        hanging.close()
