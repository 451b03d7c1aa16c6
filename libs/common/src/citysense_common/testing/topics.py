"""Read a whole Kafka topic as JSON documents: what a test checks after a run has produced everything."""

from __future__ import annotations

import json
import time
import uuid

from confluent_kafka import Consumer, TopicPartition


def read_topic(bootstrap: str, topic: str, expect: int = 0, timeout: float = 30.0) -> list[dict]:
    """Every message of every partition, in partition order, once the end of each partition is reached and at least
    ``expect`` messages came (AssertionError otherwise after ``timeout`` s). No consumer group is joined."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4().hex[:8]}",
                         "enable.partition.eof": True, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        out: list[dict] = []
        eof: set[int] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (len(eof) < len(partitions) or len(out) < expect):
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error():
                    eof.add(msg.partition())
                else:
                    out.append(json.loads(msg.value()))
    finally:
        consumer.close()
    assert len(eof) == len(partitions), f"did not reach the end of {topic} within {timeout:.0f}s"
    assert len(out) >= expect, f"{len(out)} messages on {topic}, expected at least {expect}"
    return out


def distinct_events(events: list[dict]) -> list[dict]:
    """Alert events by ``event_id``, first copy kept, in order. The scorer's real-time path writes to Kafka at least
    once: after a crash it may write an event again, always the identical event (AssertionError otherwise)."""
    seen: dict[str, dict] = {}
    for event in events:
        first = seen.setdefault(event["event_id"], event)
        assert first == event, f"two different events with id {event['event_id']}: {first} and {event}"
    return list(seen.values())
