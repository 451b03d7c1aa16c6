"""Fixtures shared by the whole suite: a real Apache Kafka broker, a real Apache Cassandra node, unique topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from citysense_localstack.servers.cassandra import CassandraNode, running_cassandra
from citysense_localstack.servers.kafka import KafkaBroker, running_kafka

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """One Apache Kafka broker (KRaft, one node) for the session on free loopback ports; tests isolate by unique
    topic names."""
    data = tmp_path_factory.mktemp("kafka")
    with running_kafka(data, log_path=data / "kafka.log") as broker:
        yield broker


@pytest.fixture(scope="session")
def cassandra_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CassandraNode | None]:
    """One Apache Cassandra node for the session on free loopback ports (started on first use); None when
    CITYSENSE_CASSANDRA_HOSTS names an external cluster, whose settings then come from the environment. Tests
    isolate by keyspace."""
    if os.environ.get("CITYSENSE_CASSANDRA_HOSTS"):
        yield None
        return
    with running_cassandra(tmp_path_factory.mktemp("cassandra")) as node:
        yield node


@pytest.fixture
def unique_topics() -> dict[str, str]:
    """Topic names no other test uses, as CITYSENSE_* settings overrides."""
    tag = uuid.uuid4().hex[:8]
    return {
        "readings_topic": f"test.{tag}.readings",
        "alerts_topic": f"test.{tag}.alerts",
        "dlq_topic": f"test.{tag}.dlq",
    }
