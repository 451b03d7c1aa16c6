"""Read a test topic back from the real broker fixture."""

from __future__ import annotations

import time

from citysense_common.contract import Reading, parse_reading
from confluent_kafka import Consumer, Message, TopicPartition


def consume(bootstrap: str, topic: str, partitions: int, expected: int, deadline_s: float = 30) -> list[Message]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-readback", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages: list[Message] = []
    deadline = time.monotonic() + deadline_s
    while len(messages) < expected and time.monotonic() < deadline:
        messages.extend(m for m in consumer.consume(1000, timeout=0.5) if not m.error())
    # A short extra read so that "more than expected" is caught too.
    messages.extend(m for m in consumer.consume(1000, timeout=1.0) if not m.error())
    consumer.close()
    return messages


def readings(messages: list[Message]) -> list[Reading]:
    out = []
    for message in messages:
        reading = parse_reading(message.value())
        assert message.key().decode() == reading.station_id
        out.append(reading)
    return out
