"""The local Apache Kafka broker: durable across restarts and crashes, transactional isolation, bounded retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_localstack.servers.kafka import KafkaError, running_kafka, server_properties, start_kafka
from citysense_localstack.servers.net import free_port
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource


def produce(bootstrap: str, topic: str, count: int, **conf: object) -> int:
    """Send ``count`` messages with acks=all; returns how many the broker acknowledged."""
    acked = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, **conf})
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), f"k{i % 5}".encode(),
                         on_delivery=lambda err, msg: acked.append(msg.value()) if err is None else None)
    assert producer.flush(15) == 0
    return len(acked)


def consume(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 15.0,
            **conf: object) -> list[bytes]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False, **conf})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values, deadline = [], time.monotonic() + timeout
    while len(values) < expected and time.monotonic() < deadline:
        values.extend(m.value() for m in consumer.consume(500, timeout=0.5) if not m.error())
    consumer.close()
    return values


def test_topics_and_data_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    with running_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "k1.log") as broker:
        ensure_topics(broker.bootstrap, [TopicSpec("durable.t", 3)])
        assert produce(broker.bootstrap, "durable.t", 300) == 300
    with running_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "k2.log") as broker:
        assert ensure_topics(broker.bootstrap, [TopicSpec("durable.t", 3)]) == []  # the topic survived
        values = consume(broker.bootstrap, "durable.t", 3, 300)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(300))
    assert (tmp_path / "kafka" / "log" / "meta.properties").exists()  # formatted once, kept


def test_sigkill_loses_no_acknowledged_message(tmp_path: Path) -> None:
    port = free_port()
    broker = start_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "k1.log")
    try:
        ensure_topics(broker.bootstrap, [TopicSpec("crash.t", 3)])
        acked = produce(broker.bootstrap, "crash.t", 1000)
    finally:
        broker.kill()
    assert acked == 1000
    with running_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "k2.log") as broker:
        values = consume(broker.bootstrap, "crash.t", 3, 1000)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(1000))


def test_read_committed_hides_aborted_transactions(kafka_broker) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec("txn.t", 1)])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "transactional.id": "citysense-test"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce("txn.t", b"aborted")
    assert producer.flush(30) == 0  # on the broker's log, so the abort has something to hide
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce("txn.t", b"committed")
    producer.commit_transaction(30)
    committed = consume(kafka_broker.bootstrap, "txn.t", 1, 2, timeout=5, **{"isolation.level": "read_committed"})
    uncommitted = consume(kafka_broker.bootstrap, "txn.t", 1, 2, timeout=5,
                          **{"isolation.level": "read_uncommitted"})
    assert committed == [b"committed"]
    assert sorted(uncommitted) == [b"aborted", b"committed"]


def test_topics_without_own_settings_are_bounded_in_time_and_size(kafka_broker) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec("plain.t", 1)])
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "plain.t")]).values()
    config = future.result(30)
    assert 0 < int(config["retention.ms"].value) <= 7 * 24 * 3600 * 1000
    assert 0 < int(config["retention.bytes"].value) <= 2**30


def test_a_port_in_use_is_refused_with_the_fix(kafka_broker, tmp_path: Path) -> None:
    with pytest.raises(KafkaError, match="CITYSENSE_KAFKA_PORT.*CITYSENSE_KAFKA_BOOTSTRAP"):
        start_kafka(tmp_path / "kafka", port=kafka_broker.port)


def test_a_broker_that_dies_while_starting_names_its_log(tmp_path: Path) -> None:
    log = tmp_path / "kafka.log"
    # A controller port in use makes the JVM exit while it starts.
    with pytest.raises(KafkaError, match=r"exited with code .* while starting; see .*kafka\.log"):
        with running_kafka(tmp_path / "kafka", controller_port=_listening_port(), log_path=log):
            pass


def _listening_port() -> int:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _held.append(sock)
    return sock.getsockname()[1]


_held: list = []


def test_server_properties_are_a_single_combined_node() -> None:
    props = dict(line.split("=", 1) for line in server_properties(
        log_dir="/d", port=9092, controller_port=9093).splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    for key in ("offsets.topic.replication.factor", "transaction.state.log.replication.factor",
                "transaction.state.log.min.isr", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == "1", key
    assert props["group.initial.rebalance.delay.ms"] == "0"


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    """The storage tool's argument parser reads an id starting with '-' as an option (as Kafka's own ids avoid)."""
    import uuid

    from citysense_localstack.servers import kafka

    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64 of 0b111110... is '-'
    draws = iter([dashed, uuid.UUID(int=1)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    cluster_id = kafka._cluster_id()
    assert not cluster_id.startswith("-")
    assert len(cluster_id) == 22
