"""Fixtures shared by the whole suite: a real Kafka-protocol broker and settings pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from citysense_localstack.broker import LocalBroker, running_broker

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One tansu broker for the session on a free loopback port (tests isolate by unique topic names)."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with running_broker(log_path=log) as broker:
        yield broker


@pytest.fixture
def unique_topics() -> dict[str, str]:
    """Topic names no other test uses, as CITYSENSE_* settings overrides."""
    tag = uuid.uuid4().hex[:8]
    return {
        "readings_topic": f"test.{tag}.readings",
        "alerts_topic": f"test.{tag}.alerts",
        "dlq_topic": f"test.{tag}.dlq",
    }
