"""The contract's topics on a real broker: what ``ensure_topics(default_topics(...))`` creates behaves as intended."""

from __future__ import annotations

import time

from citysense_common.kafka import default_topics, ensure_topics
from citysense_common.settings import CommonSettings
from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition

DAY_MS = 24 * 3600 * 1000


def test_the_readings_topic_stamps_records_with_the_brokers_clock(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    """A gateway whose clock runs a day ahead stamps its records a day ahead; on the readings topic the broker
    replaces that with its own append time, which the scorer judges "future" against."""
    settings = CommonSettings(kafka_bootstrap=kafka_broker.bootstrap, **unique_topics)
    ensure_topics(kafka_broker.bootstrap, default_topics(settings, readings_partitions=1))
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    errors: list[object] = []
    before = int(time.time() * 1000)
    producer.produce(settings.readings_topic, key=b"skewed", value=b"{}", timestamp=before + DAY_MS,
                     on_delivery=lambda err, _msg: errors.append(err))
    assert producer.flush(30) == 0
    assert errors == [None], f"the broker refused the record: {errors}"
    after = int(time.time() * 1000)

    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "ts-test",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(settings.readings_topic, 0, 0)])
        msg = consumer.poll(15)
        assert msg is not None and msg.error() is None
        kind, stamp = msg.timestamp()
    finally:
        consumer.close()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before - 5000 <= stamp <= after + 5000  # the broker's clock, not the producer's day ahead
