"""The notifier process: consume alert events (and test requests), fan out deliveries, commit when settled.

Two lanes keep subscribers apart. New events (alerts and test requests) get one immediate attempt per subscriber;
a delivery that fails, or finds its subscriber busy or backing off, is parked: recorded in the store and queued on
the retry topic (CITYSENSE_WEBHOOK_RETRIES_TOPIC), and the event's offset is free to commit. Parked deliveries are
consumed back from that topic and retried there, each lane with its own in-flight limit, so a stuck subscriber's
backlog sits in Kafka instead of pausing everyone's alerts.

Alertmanager and MQTT (public alerts for displays and apps) are best effort beside the webhooks: no offset waits
for them. Email to citizens (:mod:`citysense_notifier.email`) shares both lanes with the webhooks: confirmation
requests (CITYSENSE_CITIZEN_MAIL_TOPIC) and alert emails are new events, failed emails are parked on the same retry
topic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass

import httpx
from citysense_common.citizen.settings import CitizenSettings
from citysense_common.contract import AlertEvent
from citysense_common.kafka import (
    citizen_mail_topic,
    consume_ready,
    consumer_config,
    default_topics,
    ensure_topics,
    producer_config,
    webhook_retries_topic,
    webhook_tests_topic,
)
from citysense_common.store import AlertRecord, Store, Subscription
from citysense_common.warnings.config import PublicWarnings
from citysense_common.webhooks import SubscriptionFilters, WebhookTestRequest
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from pydantic import ValidationError

from citysense_notifier import cloudevent
from citysense_notifier.alertmanager import AlertmanagerSink
from citysense_notifier.delivery import Deliverer, Parked, RetryPolicy
from citysense_notifier.email.channel import EmailChannel
from citysense_notifier.email.delivery import EmailDeliverer, is_email
from citysense_notifier.email.smtp import SmtpTransport
from citysense_notifier.health import Progress
from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.mqtt import MqttPublisher
from citysense_notifier.offsets import OffsetTracker
from citysense_notifier.settings import NotifierSettings
from citysense_notifier.transport import PinnedTransport

log = logging.getLogger("citysense.notifier")
_POLL_TIMEOUT_S = 0.1  # short: a new alert must be picked up promptly, and commits share the Kafka thread
_COMMIT_EVERY_S = 0.2
_ALERTMANAGER_MAX_PENDING = 1000  # pushes waiting or retrying; beyond it new ones are dropped (and counted)


@dataclass
class Lane:
    """Topics whose consumption pauses together when ``limit`` of their messages are in flight."""

    name: str
    topics: frozenset[str]
    limit: int
    paused: bool = False


class SubscriptionCache:
    """Active subscriptions with parsed filters, reloaded at most every ``refresh_s`` (new ones apply within it)."""

    def __init__(self, store: Store, refresh_s: float) -> None:
        self._store, self._refresh_s = store, refresh_s
        self._loaded_at = -1e9
        self._items: list[tuple[Subscription, SubscriptionFilters]] = []

    async def matching(self, event: AlertEvent) -> list[Subscription]:
        if time.monotonic() - self._loaded_at > self._refresh_s:
            subs = await asyncio.to_thread(self._store.list_subscriptions, "active")
            items = []
            for sub in subs:
                try:
                    items.append((sub, SubscriptionFilters.model_validate(sub.filters)))
                except ValidationError:
                    log.error("subscription %s has filters this version cannot read; skipping it", sub.id)
            self._items, self._loaded_at = items, time.monotonic()
        return [sub for sub, filters in self._items if filters.matches(event)]


@dataclass(frozen=True)
class EmailSetup:
    """What email needs beyond the notifier's settings, resolved in the entry point."""

    citizen: CitizenSettings
    secret: str  # signs the confirm and unsubscribe links (the API verifies them)
    warnings: PublicWarnings | None  # config/cap.yaml; None = confirmation emails only


class Notifier:
    def __init__(self, settings: NotifierSettings, store: Store, metrics: NotifierMetrics | None = None,
                 email: EmailSetup | None = None) -> None:
        self.settings = settings
        self.email_setup = email
        self.store = store
        self.metrics = metrics or NotifierMetrics()
        self.tracker = OffsetTracker()
        self.subscriptions = SubscriptionCache(store, settings.subscriptions_refresh_s)
        self._kafka = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="kafka")  # one thread owns Kafka
        self._tasks: set[asyncio.Task[bool]] = set()
        self._pushes: set[asyncio.Task[None]] = set()  # Alertmanager pushes: no offset waits for them
        self._stop = asyncio.Event()
        self.mail_topic = email.citizen.mail_topic if email is not None and settings.smtp_host else None
        new_events = {settings.alerts_topic, settings.webhook_tests_topic} | ({self.mail_topic} - {None})
        self.lanes = [
            Lane("new events", frozenset(t for t in new_events if t), settings.notifier_max_in_flight),
            Lane("parked deliveries", frozenset({settings.webhook_retries_topic}), settings.notifier_max_parked),
        ]
        self.deliverer: Deliverer | None = None
        self._producer: Producer | None = None
        self.mqtt: MqttPublisher | None = None
        self.email: EmailChannel | None = None
        self.progress = Progress()  # /healthz: the main loop completes a pass at least every few hundred ms
        self.fatal: BaseException | None = None  # what stopped the notifier, if an error did (exit status 1)

    def stop(self) -> None:
        self._stop.set()
        if self.deliverer is not None:
            self.deliverer.stopping.set()
        if self.email is not None:
            self.email.deliverer.stopping.set()

    def _kafka_call(self, fn, *args) -> Awaitable:  # type: ignore[no-untyped-def]
        return asyncio.get_running_loop().run_in_executor(self._kafka, fn, *args)

    async def run(self) -> None:
        s = self.settings
        topics = [spec for spec in default_topics(s) if spec.name == s.alerts_topic]
        topics.append(webhook_tests_topic(s.webhook_tests_topic))
        topics.append(webhook_retries_topic(s.webhook_retries_topic))
        if self.mail_topic:
            topics.append(citizen_mail_topic(self.mail_topic))
        await asyncio.to_thread(ensure_topics, s.bootstrap, topics, s.kafka_options)
        consumer = Consumer(consumer_config(s, s.notifier_group, **{"fetch.wait.max.ms": 50}))
        consumer.subscribe([s.alerts_topic, s.webhook_tests_topic, s.webhook_retries_topic,
                            *([self.mail_topic] if self.mail_topic else [])], on_revoke=self._on_revoke)
        self._producer = Producer(producer_config(s, **{"linger.ms": 5}))
        polling = threading.Event()
        poller = threading.Thread(target=self._poll_producer, args=(polling,), name="producer", daemon=True)
        poller.start()
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        transport = PinnedTransport(s.allowed_networks(), ports=s.webhook_ports_allowed(), limits=limits)
        async with httpx.AsyncClient(timeout=s.webhook_timeout_s, follow_redirects=False, transport=transport,
                                     trust_env=False) as client:
            policy = RetryPolicy(s.webhook_max_attempts, s.webhook_max_age_s, s.webhook_backoff_base_s,
                                 s.webhook_backoff_max_s)
            self.deliverer = Deliverer(self.store, client, policy, self.metrics, s.webhook_subscriber_concurrency,
                                       attempt_timeout_s=s.webhook_timeout_s, park=self._park,
                                       hold_poll_s=s.subscriptions_refresh_s)
            # Alertmanager is an address the operator configured (often a private one): its own client, unpinned.
            am_client = httpx.AsyncClient(timeout=s.alertmanager_timeout_s, trust_env=False)
            alertmanager = AlertmanagerSink(s, am_client, self.metrics) if s.alertmanager_url else None
            if s.mqtt_host:
                self.mqtt = MqttPublisher(s, self.metrics)
                self.mqtt.start()  # connects in the background: a down broker delays nothing here
            self.email = self._email_channel(policy)
            log.info("notifier consuming %s and %s as group %s", s.alerts_topic, s.webhook_tests_topic,
                     s.notifier_group)
            last_commit = 0.0
            try:
                while not self._stop.is_set():
                    self.progress.beat()
                    await self._flow_control(consumer)
                    messages = await self._kafka_call(consume_ready, consumer, 500, _POLL_TIMEOUT_S)
                    for msg in messages:
                        self._dispatch(msg, alertmanager)
                    if time.monotonic() - last_commit >= _COMMIT_EVERY_S:
                        await self._commit(consumer)
                        last_commit = time.monotonic()
            finally:
                self.stop()
                if self._tasks:
                    await asyncio.wait(self._tasks, timeout=10)
                if self._pushes:
                    await asyncio.wait(self._pushes, timeout=2)
                    for push in self._pushes:
                        push.cancel()
                await self._commit(consumer)
                await self._kafka_call(consumer.close)
                if self.mqtt is not None:
                    await asyncio.to_thread(self.mqtt.close, 2.0)
                self._kafka.shutdown(wait=True)
                polling.set()
                poller.join()
                await asyncio.to_thread(self._producer.flush, 10)
                await am_client.aclose()

    def _email_channel(self, policy: RetryPolicy) -> EmailChannel | None:
        s, setup = self.settings, self.email_setup
        if not s.smtp_host:
            log.info("email off: CITYSENSE_SMTP_HOST is not set (no confirmation or warning emails to citizens)")
            return None
        if setup is None:
            log.warning("email off: citizen subscriptions are off (CITYSENSE_CITIZEN_ENABLED=false)")
            return None
        transport = SmtpTransport(s)
        deliverer = EmailDeliverer(self.store, transport, policy, self.metrics, park=self._park)
        log.info("email on: SMTP %s from %s; confirmations from %s, links to %s%s", transport.describe(),
                 s.smtp_from_address, setup.citizen.mail_topic, setup.citizen.public_url,
                 "" if setup.warnings else "; no warning emails (no config/cap.yaml)")
        return EmailChannel(self.store, deliverer, setup.citizen, setup.secret, setup.warnings, self.metrics,
                            from_address=s.smtp_from_address, refresh_s=s.subscriptions_refresh_s)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Runs on the Kafka thread inside consume(): commit what is settled, then let the new owner replay the rest.
        positions = {k: v for k, v in self.tracker.committable().items()
                     if any((p.topic, p.partition) == k for p in partitions)}
        if positions:
            try:
                consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()],
                                asynchronous=False)
            except KafkaException as exc:
                log.warning("commit on revoke failed: %s", exc)
        self.tracker.forget([(p.topic, p.partition) for p in partitions])

    async def _flow_control(self, consumer: Consumer) -> None:
        for lane in self.lanes:
            in_flight = self.tracker.in_flight(lane.topics)
            (self.metrics.in_flight if lane is self.lanes[0] else self.metrics.parked_in_flight).set(in_flight)
            if not lane.paused and in_flight >= lane.limit:
                await self._kafka_call(lambda t=lane.topics: consumer.pause(
                    [tp for tp in consumer.assignment() if tp.topic in t]))
                lane.paused = True
                log.warning("%d %s in flight; pausing their consumption until receivers catch up", in_flight,
                            lane.name)
            elif lane.paused and in_flight < lane.limit // 2:
                await self._kafka_call(lambda t=lane.topics: consumer.resume(
                    [tp for tp in consumer.assignment() if tp.topic in t]))
                lane.paused = False

    def _poll_producer(self, stopping: threading.Event) -> None:
        assert self._producer is not None
        while not stopping.is_set():
            self._producer.poll(0.1)

    async def _park(self, parked: Parked) -> None:
        """Queue a delivery on the retry topic; returns once Kafka has it (then the event's offset may commit)."""
        assert self._producer is not None
        loop = asyncio.get_running_loop()
        acked: asyncio.Future[KafkaError | None] = loop.create_future()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            loop.call_soon_threadsafe(lambda: acked.done() or acked.set_result(err))

        self._producer.produce(self.settings.webhook_retries_topic, key=parked.subscription_id.encode(),
                               value=parked.to_json(), on_delivery=on_delivery)
        err = await acked
        if err is not None:
            raise KafkaException(err)

    async def _commit(self, consumer: Consumer) -> None:
        positions = self.tracker.committable()
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            await self._kafka_call(lambda: consumer.commit(offsets=offsets, asynchronous=False))
            self.tracker.mark_committed(positions)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed (will retry): %s", exc)

    def _dispatch(self, msg: Message, alertmanager: AlertmanagerSink | None) -> None:
        if msg.error():
            if msg.error().code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", msg.error())
            return
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        self.tracker.started(topic, partition, offset)
        if topic == self.settings.webhook_tests_topic:
            work = self._handle_test_request(msg.value() or b"")
        elif topic == self.settings.webhook_retries_topic:
            work = self._handle_parked(msg.value() or b"")
        elif topic == self.mail_topic and self.email is not None:
            work = self.email.on_mail_request(msg.value() or b"")
        else:
            work = self._handle_alert(msg.value() or b"", alertmanager)
        task = asyncio.create_task(work)
        self._tasks.add(task)

        def done(t: asyncio.Task[bool]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return  # not settled: leave the offset uncommitted so the event is replayed
            if t.exception() is not None:
                # Most likely the store is unreachable: keep the offset and stop, a restart replays the event.
                log.error("processing %s[%d]@%d failed: %r; stopping so it is replayed", topic, partition,
                          offset, t.exception())
                if self.fatal is None:
                    self.fatal = t.exception()
                self.stop()
                return
            if t.result():  # every delivery recorded as delivered or dead; False = interrupted by shutdown
                self.tracker.finished(topic, partition, offset)

        task.add_done_callback(done)

    async def _handle_alert(self, raw: bytes, alertmanager: AlertmanagerSink | None) -> bool:
        assert self.deliverer is not None
        try:
            event = AlertEvent.model_validate_json(raw)
        except ValidationError as exc:
            self.metrics.events.labels("alerts", "malformed").inc()
            log.error("skipping an alert event that does not match the contract: %s", exc.errors()[0])
            return True
        self.metrics.events.labels("alerts", "ok").inc()
        if alertmanager is not None:
            self._push(alertmanager, event)
        if self.mqtt is not None:
            self.mqtt.publish(event)  # queued in partition order (this runs before the first await); never blocks
        # Email: started here, in partition order, so the emails of one alert keep the order of its events.
        emails = self.email.on_alert(event) if self.email is not None else asyncio.sleep(0, True)
        subs = await self.subscriptions.matching(event)
        ce_type = cloudevent.event_type(event)
        body = cloudevent.encode(event, ce_type, self.settings.cloudevents_source)
        jobs = [self.deliverer.first_attempt(sub, event.event_id, ce_type, body, event.event_time) for sub in subs]
        # The scorer's real-time path writes alert events only to Kafka: the store learns of them here, beside the
        # deliveries. Idempotent (a store keeps each alert's newest event), so a replay or an event the micro-batch
        # sink stored already changes nothing.
        recorded = asyncio.to_thread(self.store.upsert_alerts, [AlertRecord.of(event)])
        *results, emailed, _ = await asyncio.gather(*jobs, emails, recorded)
        return emailed and all(result is not None for result in results)

    def _push(self, alertmanager: AlertmanagerSink, event: AlertEvent) -> None:
        """Alertmanager is best effort beside the webhooks: its push runs on its own and no offset waits for it,
        so a slow or down Alertmanager delays neither deliveries nor consumption."""
        if len(self._pushes) >= _ALERTMANAGER_MAX_PENDING:
            self.metrics.alertmanager.labels("dropped").inc()
            log.warning("%d Alertmanager pushes pending; dropping the one of %s", len(self._pushes), event.event_id)
            return
        task = asyncio.create_task(alertmanager.push(event))
        self._pushes.add(task)
        task.add_done_callback(self._pushes.discard)

    async def _handle_test_request(self, raw: bytes) -> bool:
        assert self.deliverer is not None
        try:
            request = WebhookTestRequest.from_json(raw)
        except (ValueError, KeyError, TypeError):
            self.metrics.events.labels("tests", "malformed").inc()
            log.error("skipping a malformed webhook test request")
            return True
        self.metrics.events.labels("tests", "ok").inc()
        sub = await asyncio.to_thread(self.store.get_subscription, request.subscription_id)
        if sub is None:
            log.info("test request for deleted subscription %s ignored", request.subscription_id)
            return True
        event = cloudevent.test_event(request.event_id, sub.id)
        body = cloudevent.encode(event, cloudevent.TEST_TYPE, self.settings.cloudevents_source)
        return await self.deliverer.first_attempt(sub, event.event_id, cloudevent.TEST_TYPE, body) is not None

    async def _handle_parked(self, raw: bytes) -> bool:
        assert self.deliverer is not None
        try:
            parked = Parked.from_json(raw)
        except (ValueError, KeyError, TypeError):
            log.error("skipping a malformed parked delivery")
            return True
        if is_email(parked.event_type):
            if self.email is None:
                log.error("dropping parked email %s to %s: email is off (CITYSENSE_SMTP_HOST unset)",
                          parked.event_id, parked.subscription_id)
                return True
            return await self.email.deliverer.retry(parked)
        return await self.deliverer.retry(parked)
