"""The local broker: durable mode keeps topics and data across a restart; in-memory mode does not."""

from __future__ import annotations

import time
from pathlib import Path

from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_localstack.broker import free_port, running_broker
from confluent_kafka import Consumer, Producer, TopicPartition


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), f"k{i % 5}".encode())
    assert producer.flush(10) == 0


def consume(bootstrap: str, topic: str, partitions: int, expected: int) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, deadline = [], time.monotonic() + 15
    while len(values) < expected and time.monotonic() < deadline:
        values.extend(m.value() for m in consumer.consume(500, timeout=0.5) if not m.error())
    consumer.close()
    return values


def test_durable_broker_keeps_data_across_restart(tmp_path: Path) -> None:
    port = free_port()
    with running_broker(port, tmp_path / "b1.log", durable_dir=tmp_path / "broker") as broker:
        ensure_topics(broker.bootstrap, [TopicSpec("durable.t", 3)])
        produce(broker.bootstrap, "durable.t", 300)
    with running_broker(port, tmp_path / "b2.log", durable_dir=tmp_path / "broker") as broker:
        assert ensure_topics(broker.bootstrap, [TopicSpec("durable.t", 3)]) == []  # the topic survived
        values = consume(broker.bootstrap, "durable.t", 3, 300)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(300))
    assert any((tmp_path / "broker" / "tansu").rglob("*"))  # the log lives on disk as plain files


def test_in_memory_broker_forgets_on_restart(tmp_path: Path) -> None:
    port = free_port()
    with running_broker(port, tmp_path / "m1.log") as broker:
        ensure_topics(broker.bootstrap, [TopicSpec("volatile.t", 1)])
    with running_broker(port, tmp_path / "m2.log") as broker:
        assert ensure_topics(broker.bootstrap, [TopicSpec("volatile.t", 1)]) == ["volatile.t"]  # created anew
