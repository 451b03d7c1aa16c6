"""Kafka client helpers: client configurations, the contract's topics, topic creation, broker readiness."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka.admin import AdminClient, NewTopic

from citysense_common.settings import CommonSettings


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered at the configured bootstrap address."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


DAY_MS = 24 * 3600 * 1000
MIB = 2**20


def _bounded(retention_ms: int, retention_mib: int) -> dict[str, str]:
    # Size as well as time: a laptop's disk bounds a local install; segments small enough for retention to bite.
    return {"retention.ms": str(retention_ms), "retention.bytes": str(retention_mib * MIB),
            "segment.bytes": str(min(64, retention_mib // 4) * MIB), "cleanup.policy": "delete"}


def default_topics(settings: CommonSettings, readings_partitions: int | None = None) -> list[TopicSpec]:
    """The contract's topics with the partitions, retention times and timestamp types of the cluster's KafkaTopics
    (k8s/kafka-topics.yaml; a test keeps them equal), plus a size bound per partition for local installs.

    Readings carry the broker's append time as their record timestamp (``LogAppendTime``): the scorer judges a
    reading's ``ts`` "too far in the future" against it, and a producer's clock (a gateway's, possibly a day off)
    must not be the judge. With ``CreateTime`` the broker would also refuse a batch stamped more than
    ``message.timestamp.after.max.ms`` ahead (1 h by default), taking a skewed gateway's readings with it."""
    return [
        TopicSpec(settings.readings_topic, readings_partitions or settings.readings_partitions,
                  {**_bounded(7 * DAY_MS, 256), "message.timestamp.type": "LogAppendTime"}),
        TopicSpec(settings.alerts_topic, 6, _bounded(30 * DAY_MS, 64)),
        TopicSpec(settings.dlq_topic, 3, _bounded(14 * DAY_MS, 64)),
    ]


def webhook_tests_topic(name: str) -> TopicSpec:
    """Test-event requests from the API to the notifier: one partition, kept a day."""
    return TopicSpec(name, 1, _bounded(DAY_MS, 16))


def webhook_retries_topic(name: str) -> TopicSpec:
    """Deliveries the notifier parked for a later attempt, keyed by subscription; kept a week, well past the default
    maximum age of a delivery (1 h)."""
    return TopicSpec(name, 6, _bounded(7 * DAY_MS, 64))


def citizen_mail_topic(name: str) -> TopicSpec:
    """Email requests from the API to the notifier (a subscription id each, no address), keyed by subscription;
    kept a day: a confirmation link that waited longer is of little use."""
    return TopicSpec(name, 3, _bounded(DAY_MS, 16))


def base_config(settings: CommonSettings) -> dict[str, str | int | bool]:
    return {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}


def producer_config(settings: CommonSettings, **extra: str | int | bool) -> dict[str, str | int | bool]:
    """Idempotent, batched producer: acks=all, no duplicates on retry, lz4-compressed batches."""
    return {
        **base_config(settings),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
        # Same key -> partition mapping as the Java client, so every producer agrees where a station lives.
        "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 1_000_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        **extra,
    }


def consumer_config(settings: CommonSettings, group_id: str, **extra: str | int | bool) -> dict[str, str | int | bool]:
    """Consumer that commits explicitly; a 6 s session (the broker's minimum) moves a crashed consumer's partitions
    to the other group members within seconds."""
    return {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        **extra,
    }


def consume_ready(consumer: Consumer, max_messages: int, timeout_s: float) -> list[Message]:
    """Up to ``max_messages`` messages, returned as soon as the first one is there (empty after ``timeout_s``).

    ``Consumer.consume(n, timeout)`` returns only once n messages are there or the timeout is over, which adds up to
    the whole timeout to a lone message's latency: a single alert would wait out the poll. Here the first message
    ends the wait and the rest of the batch is whatever the client has already fetched."""
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)] if max_messages > 1 else [first]


def wait_for_broker(bootstrap: str, timeout: float = 30.0, extra: dict | None = None) -> None:
    """Block until a broker answers a metadata request, or raise :class:`BrokerUnavailable`."""
    # log_level 0: "connection refused" while the broker is still starting is expected, not news.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, **(extra or {})})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin.list_topics(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.2)
    raise BrokerUnavailable(f"no Kafka broker answered at {bootstrap} within {timeout:.0f}s ({last})")


def ensure_topics(bootstrap: str, specs: list[TopicSpec], extra: dict | None = None,
                  timeout: float = 30.0) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing topics are left alone."""
    # log_level 4: warnings and errors only; librdkafka's info lines about its admin queue are noise in `make up`.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4, **(extra or {})})
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [spec for spec in specs if spec.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(s.name, num_partitions=s.partitions, replication_factor=1, config=s.config) for s in missing],
        operation_timeout=timeout,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    return created
