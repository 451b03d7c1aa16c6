"""Live alert events for Server-Sent Events clients: one Kafka reader per API process, fanned out in memory.

The reader assigns every partition of the alerts topic (no consumer group: each API replica needs every event and
joining a group would only add rebalance delay). It starts from the earliest offset because "latest" is not
reliable on every Kafka-protocol broker, and skips events written before the process started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from citysense_common.contract import AlertEvent
from citysense_common.kafka import base_config
from citysense_common.settings import CommonSettings
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from pydantic import ValidationError

log = logging.getLogger("citysense.alert_api.stream")
# Events stamped a little before start still count: clocks of producer and API may differ slightly.
_START_SLACK_MS = 5_000


@dataclass(eq=False)
class StreamClient:
    peer: str = ""
    queue: asyncio.Queue[AlertEvent | None] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: bool = False


class StreamRefused(Exception):  # noqa: N818 - a refusal, not an error
    """No stream for this client: the process holds its maximum (``per_client`` False) or this client does."""

    def __init__(self, per_client: bool, limit: int) -> None:
        super().__init__(f"stream limit {limit} reached")
        self.per_client, self.limit = per_client, limit


class AlertBroadcaster:
    def __init__(self, settings: CommonSettings, max_clients: int = 1000, max_per_client: int = 1000,
                 on_message: Callable[[AlertEvent | None], None] | None = None) -> None:
        """``on_message`` runs on the reader thread for every message read: with the event when it is valid and
        not older than this process, else with None (the app records the event and drops cached alert pages)."""
        self._settings = settings
        self._on_message = on_message
        self._max_clients = max_clients
        self._max_per_client = max_per_client
        self._clients: set[StreamClient] = set()  # streams events are fanned out to
        self._open: set[StreamClient] = set()  # every stream not yet closed, a dropped one included
        self._per_peer: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_ms = int(time.time() * 1000)
        self.events_seen = 0

    # ---- lifecycle (called on the event loop)
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="alert-stream-reader", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        for client in list(self._open):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)

    # ---- clients
    def subscribe(self, peer: str) -> StreamClient:
        """A new stream for the client at address ``peer``; :class:`StreamRefused` when a limit is reached."""
        if len(self._open) >= self._max_clients:
            raise StreamRefused(per_client=False, limit=self._max_clients)
        if self._per_peer[peer] >= self._max_per_client:
            raise StreamRefused(per_client=True, limit=self._max_per_client)
        client = StreamClient(peer=peer)
        self._clients.add(client)
        self._open.add(client)
        self._per_peer[peer] += 1
        return client

    def unsubscribe(self, client: StreamClient) -> None:
        """Release a stream; safe to call more than once (the stream and its response both call it)."""
        self._clients.discard(client)
        if client in self._open:
            self._open.discard(client)
            self._per_peer[client.peer] -= 1
            if self._per_peer[client.peer] <= 0:
                del self._per_peer[client.peer]

    @property
    def client_count(self) -> int:
        """Open streams (the ``citysense_api_stream_clients`` gauge)."""
        return len(self._open)

    def publish(self, event: AlertEvent) -> None:
        """Fan one event out (event-loop thread only). A client too slow to keep up is cut off, not waited for."""
        self.events_seen += 1
        for client in list(self._clients):
            try:
                client.queue.put_nowait(event)
            except asyncio.QueueFull:
                client.dropped = True
                self._clients.discard(client)

    # ---- Kafka reader thread
    def _run(self) -> None:
        config = {**base_config(self._settings), "group.id": f"citysense-alert-api-stream-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100,
                  "enable.partition.eof": False}
        consumer = Consumer(config)
        topic = self._settings.alerts_topic
        try:
            while not self._stop.is_set() and not self._assign(consumer, topic):
                self._stop.wait(2.0)
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                _, ts_ms = msg.timestamp()
                if ts_ms and ts_ms < self._started_ms - _START_SLACK_MS:
                    if self._on_message is not None:
                        self._on_message(None)
                    continue
                try:
                    event = AlertEvent.model_validate_json(msg.value() or b"")
                except ValidationError:
                    log.warning("skipping a malformed alert event at %s[%d]@%d", topic, msg.partition(), msg.offset())
                    if self._on_message is not None:
                        self._on_message(None)
                    continue
                if self._on_message is not None:
                    self._on_message(event)
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self.publish, event)
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer, topic: str) -> bool:
        try:
            meta = consumer.list_topics(topic, timeout=5)
        except KafkaException as exc:
            log.info("alert stream waiting for the broker: %s", exc)
            return False
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            return False
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in info.partitions])
        log.info("alert stream reading %s (%d partitions)", topic, len(info.partitions))
        return True
