"""Publishes "send a test event" requests for the notifier (see ``POST /v1/subscriptions/{id}/test``)."""

from __future__ import annotations

import asyncio
import logging

from citysense_common.kafka import ensure_topics, producer_config, webhook_tests_topic
from citysense_common.webhooks import WebhookTestRequest
from confluent_kafka import KafkaException, Producer

from citysense_alert_api.problems import Problem
from citysense_alert_api.settings import ApiSettings

log = logging.getLogger("citysense.alert_api.tests")


class TestRequestPublisher:
    __test__ = False  # not a pytest class

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings
        self._producer: Producer | None = None
        self._topic_ready = False

    def _ensure(self) -> Producer:
        if not self._topic_ready:
            ensure_topics(self._settings.bootstrap, [webhook_tests_topic(self._settings.webhook_tests_topic)],
                          extra=self._settings.kafka_options, timeout=5)
            self._topic_ready = True
        if self._producer is None:
            self._producer = Producer(producer_config(self._settings, **{"linger.ms": 0}))
        return self._producer

    def _send(self, request: WebhookTestRequest) -> None:
        producer = self._ensure()
        errors: list[str] = []

        def on_delivery(err: object, _msg: object) -> None:
            if err is not None:
                errors.append(str(err))

        producer.produce(self._settings.webhook_tests_topic, key=request.subscription_id.encode(),
                         value=request.to_json(), on_delivery=on_delivery)
        remaining = producer.flush(5.0)
        if remaining or errors:
            raise KafkaException(errors[0] if errors else "message not acknowledged within 5 s")

    async def publish(self, request: WebhookTestRequest) -> None:
        try:
            await asyncio.to_thread(self._send, request)
        except KafkaException as exc:
            log.warning("could not queue a test event: %s", exc)
            raise Problem(503, "Service Unavailable",
                          "The message broker is not reachable, so the test event cannot be queued; try again.",
                          headers={"Retry-After": "5"}) from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(2.0)
