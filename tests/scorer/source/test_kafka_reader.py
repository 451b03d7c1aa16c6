"""The data source's partition reader: exact ranges, pooled consumers reused across micro-batches, safe on jumps."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_scorer.source import kafka_datasource
from citysense_scorer.source.kafka_datasource import KafkaRange, group_ranges, read_range, read_ranges
from confluent_kafka import Producer


@pytest.fixture(autouse=True)
def _no_pooled_consumers_left() -> Iterator[None]:
    yield
    kafka_datasource.close_pool()


def produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(count):
        producer.produce(topic, f"v{i}".encode(), b"k", partition=0)
    assert producer.flush(10) == 0


def offsets(batches: list[pa.RecordBatch]) -> list[int]:
    return [o for b in batches for o in b.column("offset").to_pylist()]


def test_consecutive_ranges_reuse_one_consumer_and_read_exactly(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, 300)
    conf = {"bootstrap.servers": kafka_broker.bootstrap}

    first = list(read_range(conf, KafkaRange(topic, 0, 0, 100)))
    pooled = next(c for (k, t, p), c in kafka_datasource._POOL.items() if t == topic)  # noqa: SLF001
    second = list(read_range(conf, KafkaRange(topic, 0, 100, 250)))
    assert next(c for (k, t, p), c in kafka_datasource._POOL.items() if t == topic) is pooled  # noqa: SLF001
    assert offsets(first) == list(range(100))
    assert offsets(second) == list(range(100, 250))
    assert [v.as_py() for b in second for v in b.column("value")][:2] == [b"v100", b"v101"]

    # A retried or older range (Spark re-runs a batch after a failure) seeks back and reads it exactly again.
    assert offsets(list(read_range(conf, KafkaRange(topic, 0, 50, 60)))) == list(range(50, 60))
    # And a range further ahead seeks forward.
    assert offsets(list(read_range(conf, KafkaRange(topic, 0, 280, 300)))) == list(range(280, 300))


def test_an_abandoned_read_discards_the_pooled_consumer(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, 5000)
    conf = {"bootstrap.servers": kafka_broker.bootstrap}
    reader = read_range(conf, KafkaRange(topic, 0, 0, 5000))
    next(reader)  # the task dies after the first Arrow batch
    reader.close()
    assert not [t for (_, t, _) in kafka_datasource._POOL if t == topic]  # noqa: SLF001
    assert offsets(list(read_range(conf, KafkaRange(topic, 0, 0, 5000)))) == list(range(5000))


def test_ranges_are_spread_over_at_most_the_configured_tasks() -> None:
    ranges = [KafkaRange("t", p, 10 * p, 10 * p + 5) for p in (5, 0, 3, 1, 4)]  # partition 2 has nothing new
    groups = group_ranges(ranges, 2)
    assert [[r.partition for r in g.ranges] for g in groups] == [[0, 4], [1, 3, 5]]
    # Each range is planned exactly once and keeps its offsets.
    assert sorted((r.partition, r.start, r.end) for g in groups for r in g.ranges) == \
        sorted((r.partition, r.start, r.end) for r in ranges)
    # A partition stays with its task whatever else has new data.
    assert [r.partition for r in group_ranges([KafkaRange("t", 3, 0, 1)], 2)[0].ranges] == [3]
    assert [[r.partition for r in g.ranges] for g in group_ranges(ranges, 0)] == [[5], [0], [3], [1], [4]]
    assert [len(g.ranges) for g in group_ranges(ranges, 8)] == [1, 1, 1, 1, 1]
    assert group_ranges([], 2) == []


def test_one_task_reads_every_range_it_was_given_exactly(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 3)])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "enable.idempotence": True})
    for p in range(3):
        for i in range(40):
            producer.produce(topic, f"p{p}-{i}".encode(), b"k", partition=p)
    assert producer.flush(10) == 0
    conf = {"bootstrap.servers": kafka_broker.bootstrap}

    (task,) = group_ranges([KafkaRange(topic, 0, 5, 40), KafkaRange(topic, 2, 0, 12)], 1)
    batches = list(read_ranges(conf, task.ranges))
    rows = [(p, o, v) for b in batches for p, o, v in zip(b.column("partition").to_pylist(),
                                                             b.column("offset").to_pylist(),
                                                             b.column("value").to_pylist(), strict=True)]
    assert rows == [(0, o, f"p0-{o}".encode()) for o in range(5, 40)] + [(2, o, f"p2-{o}".encode()) for o in range(12)]


def test_a_negative_number_of_read_tasks_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from citysense_common.settings import SettingsError
    from citysense_scorer.settings import scorer_settings

    monkeypatch.setenv("CITYSENSE_SCORER_SOURCE_TASKS", "-1")
    with pytest.raises(SettingsError, match="CITYSENSE_SCORER_SOURCE_TASKS"):
        scorer_settings()
    monkeypatch.setenv("CITYSENSE_SCORER_SOURCE_TASKS", "0")
    assert scorer_settings().scorer_source_tasks == 0  # 0 = one task per Kafka partition


def test_with_nothing_new_latest_offset_waits_for_readings_before_allowing_a_no_data_batch(
        kafka_broker, unique_topics) -> None:  # noqa: ANN001
    """A trigger that finds nothing new long-polls (wait_ms) so a burst landing meanwhile starts its own micro-batch
    at once instead of waiting behind a no-data one; when nothing comes, the offsets stay where they were."""
    import threading
    import time

    from citysense_scorer.source.kafka_datasource import KafkaStreamReader

    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 2)])
    produce(kafka_broker.bootstrap, topic, 3)  # partition 0
    reader = KafkaStreamReader({"bootstrap": kafka_broker.bootstrap, "topic": topic, "wait_ms": "1500"})
    try:
        start = reader.latestOffset({"0": 0, "1": 0})
        assert start == {"0": 3, "1": 0}  # new data: no wait needed

        began = time.monotonic()
        assert reader.latestOffset(start) == start  # nothing new within wait_ms: the same offsets, after waiting
        assert time.monotonic() - began >= 1.4

        later = threading.Timer(0.3, produce, (kafka_broker.bootstrap, topic, 2))
        later.start()
        began = time.monotonic()
        latest = reader.latestOffset(start)  # the readings produced during the wait end it
        later.join()
        assert latest == {"0": 5, "1": 0}
        assert time.monotonic() - began < 1.4  # it returned on their arrival, not at the end of the wait

        without = KafkaStreamReader({"bootstrap": kafka_broker.bootstrap, "topic": topic, "wait_ms": "0"})
        try:
            began = time.monotonic()
            assert without.latestOffset(latest) == latest
            assert time.monotonic() - began < 1.4
        finally:
            without.stop()
    finally:
        reader.stop()


def test_the_source_wait_is_a_setting_and_reaches_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    from citysense_common.settings import SettingsError
    from citysense_scorer.settings import scorer_settings

    assert scorer_settings().scorer_source_wait_ms == 500
    monkeypatch.setenv("CITYSENSE_SCORER_SOURCE_WAIT_MS", "-5")
    with pytest.raises(SettingsError, match="CITYSENSE_SCORER_SOURCE_WAIT_MS"):
        scorer_settings()
    from citysense_scorer.source.kafka_datasource import KafkaStreamReader

    assert KafkaStreamReader({"topic": "t", "wait_ms": "250"}).wait_s == 0.25
    assert KafkaStreamReader({"topic": "t"}).wait_s == 0


def test_a_checkpoint_beyond_a_partitions_end_is_refused_with_the_fix() -> None:
    from citysense_scorer.source.kafka_datasource import CheckpointBeyondTopic, check_resumable

    check_resumable("t", {0: 10, 1: 0}, {0: 10, 1: 5}, "/ckpt")  # at the end or behind it: fine
    with pytest.raises(CheckpointBeyondTopic, match=r"partition 0 ends at offset 3 but the checkpoint resumes at "
                                                    r"10.*delete /ckpt"):
        check_resumable("t", {0: 10, 1: 0}, {0: 3, 1: 5}, "/ckpt")
    with pytest.raises(CheckpointBeyondTopic, match="partition 1 no longer exists"):
        check_resumable("t", {0: 0, 1: 0}, {0: 3}, "/ckpt")


def test_a_running_source_stops_when_the_topic_falls_behind_its_offsets(kafka_broker, unique_topics) -> None:  # noqa: ANN001
    """The topic was recreated under a running query: the next trigger raises instead of waiting for offset 50."""
    from citysense_scorer.source.kafka_datasource import CheckpointBeyondTopic, KafkaStreamReader

    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, 5)
    reader = KafkaStreamReader({"bootstrap": kafka_broker.bootstrap, "topic": topic, "checkpoint": "/data/ckpt"})
    try:
        assert reader.latestOffset({"0": 5}) == {"0": 5}
        with pytest.raises(CheckpointBeyondTopic, match="ends at offset 5 but the checkpoint resumes at 50"):
            reader.latestOffset({"0": 50})
    finally:
        reader.stop()
