"""Produces citizens' mail requests (``citysense_common.citizen.mail``) for the notifier, acknowledged by Kafka.

Each request is flushed before the API answers, so a 202 means the request is on the broker; a broker that does
not acknowledge within the deadline makes the request fail (the caller answers 503 and undoes what it stored). The
producer gives a message up after the same deadline (``message.timeout.ms``), so a refused request is not sent
later behind the caller's back, except when the broker stored it and only the acknowledgement was lost: the
notifier then finds no pending subscription under its id and sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from citysense_common.citizen.mail import MailRequest
from citysense_common.kafka import citizen_mail_topic, ensure_topics, producer_config
from citysense_common.settings import CommonSettings
from confluent_kafka import KafkaException, Producer

log = logging.getLogger("citysense.alert_api.citizen")
DEADLINE_S = 5.0


class MailRequestFailed(RuntimeError):
    """The broker did not take the request (unreachable, or no acknowledgement within the deadline)."""


class MailRequestPublisher:
    def __init__(self, settings: CommonSettings, topic: str, deadline_s: float = DEADLINE_S) -> None:
        self._settings = settings
        self.topic = topic
        self.deadline_s = deadline_s
        self._producer: Producer | None = None
        self._topic_ready = False
        self._lock = threading.Lock()

    def _ensure(self) -> Producer:
        with self._lock:
            if not self._topic_ready:
                ensure_topics(self._settings.bootstrap, [citizen_mail_topic(self.topic)],
                              extra=self._settings.kafka_options, timeout=self.deadline_s)
                self._topic_ready = True
            if self._producer is None:
                self._producer = Producer(producer_config(
                    self._settings, **{"linger.ms": 0, "message.timeout.ms": int(self.deadline_s * 1000)}))
            return self._producer

    def _send(self, request: MailRequest) -> None:
        try:
            producer = self._ensure()
        except KafkaException as exc:
            raise MailRequestFailed(str(exc)) from None
        errors: list[str] = []
        done = threading.Event()

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))
            done.set()

        producer.produce(self.topic, key=request.key, value=request.encode(), on_delivery=on_delivery)
        producer.flush(self.deadline_s + 1.0)
        if not done.is_set() or errors:
            raise MailRequestFailed(errors[0] if errors else f"not acknowledged within {self.deadline_s:g} s")

    async def publish(self, request: MailRequest) -> None:
        """Raises MailRequestFailed when the broker did not acknowledge the request."""
        await asyncio.to_thread(self._send, request)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(2.0)
