"""Reading a batch of messages without waiting out the poll timeout (``citysense_common.kafka.consume_ready``)."""

from __future__ import annotations

import threading
import time

from citysense_common.kafka import TopicSpec, consume_ready, ensure_topics
from confluent_kafka import Consumer, Producer, TopicPartition

TIMEOUT_S = 8.0  # far longer than a message takes to arrive on loopback


def _consumer(bootstrap: str, topic: str) -> Consumer:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-reader", "fetch.wait.max.ms": 50})
    consumer.assign([TopicPartition(topic, 0, 0)])
    return consumer


def test_returns_as_soon_as_one_message_is_there(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    """``Consumer.consume(n, timeout)`` returns only when n messages are there or the timeout is over, so a lone
    alert would wait out the whole timeout; ``consume_ready`` returns with the first one."""
    topic = unique_topics["alerts_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    consumer = _consumer(kafka_broker.bootstrap, topic)
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    try:
        assert consume_ready(consumer, 500, 1.0) == []  # nothing there: empty after the timeout

        def send() -> None:
            time.sleep(0.5)
            producer.produce(topic, value=b"alert")
            producer.flush(10)

        sender = threading.Thread(target=send)
        started = time.monotonic()
        sender.start()
        messages = consume_ready(consumer, 500, TIMEOUT_S)
        waited = time.monotonic() - started
        sender.join()
    finally:
        consumer.close()
    assert [m.value() for m in messages] == [b"alert"]
    assert waited < TIMEOUT_S / 2, f"waited {waited:.1f} s for one message: the timeout, not the message"


def test_takes_what_is_there_up_to_the_limit(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    topic = unique_topics["alerts_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i in range(30):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(10) == 0
    consumer = _consumer(kafka_broker.bootstrap, topic)
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while len(got) < 30 and time.monotonic() < deadline:
            batch = consume_ready(consumer, 10, TIMEOUT_S)
            assert 1 <= len(batch) <= 10
            got += [m.value() for m in batch]
    finally:
        consumer.close()
    assert got == [str(i).encode() for i in range(30)]  # every message once, in order
