"""``citysense-stack watch``: live status of the readings topic — readings/s, distinct stations, invalid readings.

Counts by broker append time, one line per second, so what you see is what the pipeline is receiving now.
Every reading is checked with the contract's reference validator.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from citysense_common.contract import ContractError, parse_reading
from citysense_common.settings import CommonSettings
from confluent_kafka import Consumer, TopicPartition


@dataclass
class Second:
    readings: int = 0
    invalid: int = 0
    stations: set[str] = field(default_factory=set)


def watch(settings: CommonSettings, seconds: float, out=print) -> list[tuple[int, Second]]:  # noqa: ANN001
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "citysense-watch",
                         "enable.auto.commit": False, **settings.kafka_options})
    topic = settings.readings_topic
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    start = time.time()
    buckets: dict[int, Second] = defaultdict(Second)
    printed = int(start)
    while time.time() < start + seconds:
        for message in consumer.consume(5000, timeout=0.2):
            if message.error():
                continue
            _, stamp_ms = message.timestamp()
            second = stamp_ms // 1000
            if second < int(start):
                continue  # history from before we started watching
            bucket = buckets[second]
            bucket.readings += 1
            try:
                bucket.stations.add(parse_reading(message.value()).station_id)
            except ContractError:
                bucket.invalid += 1
        now = int(time.time())
        while printed < now - 1:  # a second is complete once the next one has passed
            printed += 1
            b = buckets.get(printed, Second())
            out(f"{time.strftime('%H:%M:%S', time.localtime(printed))}  {b.readings:>8} readings/s  "
                f"{len(b.stations):>7} stations  {b.invalid:>5} invalid")
    consumer.close()
    return sorted(buckets.items())
