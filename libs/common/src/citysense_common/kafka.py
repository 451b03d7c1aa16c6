"""Kafka client helpers: client configurations, topic creation, broker readiness.

The defaults are right for real Kafka and tolerate the local tansu broker (slow first group join, so a short
session timeout; ``ListOffsets`` latest is unreliable there, so callers use watermarks cached from fetches).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from citysense_common.settings import CommonSettings


class BrokerUnavailable(RuntimeError):
    """No Kafka broker answered at the configured bootstrap address."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def default_topics(settings: CommonSettings, readings_partitions: int = 6) -> list[TopicSpec]:
    """The three topics of the contract with their local defaults (the cluster uses Strimzi KafkaTopics)."""
    return [
        TopicSpec(settings.readings_topic, readings_partitions, {"retention.ms": str(24 * 3600 * 1000)}),
        TopicSpec(settings.alerts_topic, 3, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
        TopicSpec(settings.dlq_topic, 3, {"retention.ms": str(7 * 24 * 3600 * 1000)}),
    ]


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
    """Consumer that commits explicitly; 6 s session timeout keeps tansu's first group join near 3 s."""
    return {
        **base_config(settings),
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        **extra,
    }


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
