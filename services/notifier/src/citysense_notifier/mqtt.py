"""Optional third sink: public alerts on an MQTT broker, so displays and apps follow them without the API.

Topics, under CITYSENSE_MQTT_TOPIC_PREFIX (default ``citysense``), all published with QoS 1:

``<prefix>/alerts/<geohash5>/<severity>``
    Every event of a public alert, not retained, on the 5-character geohash cell (about 5 km) of its station. A
    public alert is one whose kind and severity CITYSENSE_MQTT_PUBLIC lists (by default the CAP feed's: threshold
    warning/critical, forecast info). Updates and resolves of a public kind are published at any severity, so that
    a follower learns when an alert ends or drops below the public levels; an alert that opens below them is not.
    Events of stations without a location have no area topic.
``<prefix>/stations/<station_id>/alert/<rule_id>``
    Retained: the newest event of the station's open public alert of that rule, so a late subscriber gets the
    current state at once. A resolve, or an update below the public severities, publishes an empty retained
    message, which deletes the retained state on the broker (the MQTT convention).

The payload is the alert event JSON of contract v1 (``contracts/alert-event.v1.schema.json``), the document a
webhook carries as its CloudEvent ``data``.

Delivery is best effort beside the webhooks, like Alertmanager: no Kafka offset waits for the broker, so a down
or slow broker never holds up webhooks or consumption. Messages wait in a bounded queue while the broker is away
and are sent in order once the connection is back (reconnects back off up to CITYSENSE_MQTT_RECONNECT_MAX_S). The
retained states are coalesced per topic (only the newest state of a station's rule waits), so they converge after
an outage of any length; area events beyond CITYSENSE_MQTT_MAX_QUEUED drop the oldest first. What is still queued
when the notifier stops is lost (counted): a retained state then stays as it was until that alert's next event.
Events replayed from Kafka after a crash are published again, so a subscriber de-duplicates by ``event_id``.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt
from citysense_common import geohash
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.settings import NotifierSettings

log = logging.getLogger("citysense.notifier.mqtt")

AREA_PRECISION = 5  # geohash characters of an area topic: cells of about 4.9 x 4.9 km at the equator
_WINDOW = 100  # messages handed to the client library and not yet acknowledged by the broker
_LOG_EVERY_S = 60.0  # at most one warning per minute while the broker stays unreachable
_TOPIC_UNSAFE = str.maketrans({"/": "_", "+": "_", "#": "_", "\x00": "_"})

TopicKind = Literal["area", "station"]


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool

    @property
    def kind(self) -> TopicKind:
        return "station" if self.retain else "area"


def topic_level(value: str) -> str:
    """One topic level: no separator or wildcard inside."""
    return value.translate(_TOPIC_UNSAFE) or "_"


def area_topic(prefix: str, lat: float, lon: float, severity: Severity) -> str:
    return f"{prefix}/alerts/{geohash.encode(lat, lon, AREA_PRECISION)}/{severity.value}"


def station_topic(prefix: str, station_id: str, rule_id: str) -> str:
    return f"{prefix}/stations/{topic_level(station_id)}/alert/{topic_level(rule_id)}"


def messages_for(event: AlertEvent, prefix: str,
                 public: dict[AlertKind, list[Severity]]) -> tuple[list[Message], str | None]:
    """What one alert event publishes, and why nothing (or no area message) when that is so."""
    if event.kind not in public:
        return [], "not_public"
    public_now = event.severity in public[event.kind]
    if not public_now and event.state == AlertState.OPEN:
        return [], "not_public"
    payload = event.to_json()
    messages = []
    skipped = None
    if event.location is not None:
        messages.append(Message(area_topic(prefix, event.location.lat, event.location.lon, event.severity), payload,
                                retain=False))
    else:
        skipped = "no_location"
    current = public_now and event.state != AlertState.RESOLVED
    messages.append(Message(station_topic(prefix, event.station_id, event.rule_id), payload if current else b"",
                            retain=True))
    return messages, skipped


class MqttPublisher:
    """Publishes from a queue of its own on a sender thread; the client library's thread keeps the connection.

    :meth:`publish` never blocks on the network, so it is safe on the event loop.
    """

    def __init__(self, settings: NotifierSettings, metrics: NotifierMetrics) -> None:
        assert settings.mqtt_host
        self.settings = settings
        self.metrics = metrics
        self.prefix = settings.mqtt_topic_prefix
        self.public = settings.mqtt_public
        self.address = f"{settings.mqtt_host}:{settings.mqtt_port_or_default}"
        self._cond = threading.Condition()
        self._states: OrderedDict[str, bytes] = OrderedDict()  # retained states, newest per topic
        self._events: deque[Message] = deque()
        self._in_flight: dict[int, Message] = {}  # by message id, until the broker's PUBACK
        self._acked_early: dict[int, bool] = {}  # PUBACKs (ok?) that arrived before publish() returned their id
        self._handing = 0
        self._closed = False
        self.connected = threading.Event()
        self._last_warning = 0.0
        self._client = self._make_client()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client_id = s.mqtt_client_id or f"citysense-notifier-{socket.gethostname()}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                             clean_session=True)
        if s.mqtt_username:
            password = s.mqtt_password.get_secret_value() if s.mqtt_password else None
            client.username_pw_set(s.mqtt_username, password)
        if s.mqtt_tls:
            # Verifies the broker's certificate and host name against the CA file, or the system's CAs.
            client.tls_set(ca_certs=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=s.mqtt_reconnect_max_s)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def start(self) -> None:
        """Connect in the background; until the broker answers, messages wait in the queue."""
        s = self.settings
        self._client.connect_async(s.mqtt_host, s.mqtt_port_or_default, keepalive=s.mqtt_keepalive_s)
        self._client.loop_start()
        self._sender.start()
        log.info("publishing public alerts to MQTT broker %s under %s/ (TLS %s)", self.address, self.prefix,
                 "on" if s.mqtt_tls else "off")

    def publish(self, event: AlertEvent) -> None:
        messages, skipped = messages_for(event, self.prefix, self.public)
        if skipped:
            self.metrics.mqtt_skipped.labels(skipped).inc()
        if not messages:
            return
        with self._cond:
            for message in messages:
                if message.retain:
                    if message.topic not in self._states and len(self._states) >= self.settings.mqtt_max_queued:
                        self._dropped(message, "queue_full")
                        continue
                    self._states[message.topic] = message.payload  # replaces a state still waiting for the topic
                else:
                    if len(self._events) >= self.settings.mqtt_max_queued:
                        self._dropped(self._events.popleft(), "queue_full")
                    self._events.append(message)
            self._gauge()
            self._cond.notify_all()

    def close(self, timeout: float = 2.0) -> None:
        """Give what is queued ``timeout`` seconds to reach a connected broker, then disconnect."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending() and self.connected.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            self._closed = True
            lost = [*self._in_flight.values(), *self._events,
                    *(Message(topic, payload, True) for topic, payload in self._states.items())]
            for message in lost:
                self._dropped(message, "shutdown")
            if lost:
                log.warning("%d MQTT messages not acknowledged by %s at shutdown; they are lost", len(lost),
                            self.address)
            self._in_flight.clear()
            self._events.clear()
            self._states.clear()
            self._gauge()
            self._cond.notify_all()
        self._client.disconnect()
        self._client.loop_stop()
        if self._sender.is_alive():
            self._sender.join(timeout=5)

    def _pending(self) -> int:
        return len(self._states) + len(self._events) + len(self._in_flight) + self._handing

    def _gauge(self) -> None:
        self.metrics.mqtt_queued.set(self._pending())

    def _dropped(self, message: Message, reason: str) -> None:
        self.metrics.mqtt_dropped.labels(message.kind, reason).inc()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not (self._states or self._events)
                                            or len(self._in_flight) + self._handing >= _WINDOW):
                    self._cond.wait()
                if self._closed:
                    return
                if self._states:
                    topic, payload = self._states.popitem(last=False)
                    message = Message(topic, payload, retain=True)
                else:
                    message = self._events.popleft()
                self._handing += 1
            # Outside the lock: the client library calls _on_publish holding a lock of its own that publish() takes.
            try:
                info = self._client.publish(message.topic, message.payload, qos=1, retain=message.retain)
                taken = info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)
            except (ValueError, OSError) as exc:
                log.error("cannot publish to MQTT topic %s: %s", message.topic, exc)
                info, taken = None, False
            with self._cond:
                self._handing -= 1
                if self._closed:
                    return
                if not taken or info is None:
                    self._dropped(message, "rejected")
                elif info.mid in self._acked_early:
                    self._acknowledged(message, self._acked_early.pop(info.mid))
                else:
                    # Taken while disconnected too (NO_CONN): the client sends it once connected, and sends again
                    # what was not acknowledged before a connection dropped.
                    self._in_flight[info.mid] = message
                self._gauge()

    # Callbacks, on the client library's network thread.

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.metrics.mqtt_connect_failures.inc()
            self._warn(f"MQTT broker {self.address} refused the connection: {reason}")
            return
        self.connected.set()
        self.metrics.mqtt_connected.set(1)
        self._last_warning = 0.0
        log.info("connected to MQTT broker %s", self.address)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self.metrics.mqtt_connect_failures.inc()
        error = sys.exc_info()[1]  # the client library calls this while handling the connection's OSError
        why = f" ({type(error).__name__}: {error})" if error is not None else ""
        self._warn(f"cannot reach MQTT broker {self.address}{why}; retrying with backoff, alerts wait in the queue")

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.metrics.mqtt_connected.set(0)
        with self._cond:
            self._cond.notify_all()
            closed = self._closed
        if was_connected and not closed:
            log.warning("lost the connection to MQTT broker %s (%s); reconnecting", self.address, reason)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        ok = reason is None or not reason.is_failure  # MQTT 3.1.1 acknowledges without a reason
        with self._cond:
            message = self._in_flight.pop(mid, None)
            if message is None:
                self._acked_early[mid] = ok
            else:
                self._acknowledged(message, ok)
            self._gauge()
            self._cond.notify_all()

    def _acknowledged(self, message: Message, ok: bool) -> None:
        if ok:
            self.metrics.mqtt_published.labels(message.kind).inc()
        else:
            self._dropped(message, "rejected")

    def _warn(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_S:
            self._last_warning = now
            log.warning("%s", text)
