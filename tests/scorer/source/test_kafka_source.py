"""The scorer's source frame on a real broker: Spark's Kafka source, then the decoder.

What the micro-batch query relies on: at most ``scorer_max_offsets_per_trigger`` messages per micro-batch, the broker's
clock for "future" (append time on a LogAppendTime topic, the producer's stamp capped at now on a CreateTime one),
every message either a decoded row or a dead letter with the reference validator's reason, and a checkpoint that
cannot resume on the topic (recreated, or written by another reader) refused before anything is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from citysense_common.contract import ContractError
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_scorer.job.lag import start_lag
from citysense_scorer.settings import ScorerSettings, scorer_settings
from citysense_scorer.source.decode import EPOCH, ONE_US
from citysense_scorer.source.frame import source_frame
from citysense_scorer.source.offsets import CheckpointBeyondTopic, CheckpointOfAnotherReader
from citysense_scorer.source.reference import validate_reading
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.scorer.reading_cases import CASES, doc

pytestmark = pytest.mark.slow


def settings_for(broker: Any, topics: dict[str, str], tmp_path: Path, **over: object) -> ScorerSettings:
    return scorer_settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp_path, **topics, **over)


def produce(bootstrap: str, topic: str, values: list[bytes | None], partition: int | None = None,
            timestamp_ms: int | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for value in values:
        kwargs: dict[str, Any] = {"key": b"k"}
        if partition is not None:
            kwargs["partition"] = partition
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        producer.produce(topic, value, **kwargs)
    assert producer.flush(30) == 0


def run_to_end(spark: Any, settings: ScorerSettings, registry: Any) -> list[list[dict]]:
    """Run the source frame until it has read everything there is (``availableNow``); the rows of each micro-batch."""
    batches: list[list[dict]] = []

    def collect(df: Any, _batch_id: int) -> None:
        rows = df.toArrow().to_pylist()
        if rows:
            batches.append(sorted(rows, key=lambda r: (r["partition"], r["offset"])))

    query = (source_frame(spark, settings, registry).writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(settings.checkpoint_dir / "spark"))
             .trigger(availableNow=True).start())
    query.awaitTermination(300)
    assert query.exception() is None, query.exception()
    return batches


def recreate(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 30
    while topic in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    ensure_topics(bootstrap, [TopicSpec(topic, partitions)])


def test_a_micro_batch_reads_at_most_the_cap_in_offset_order(spark, registry, kafka_broker, unique_topics,
                                                             tmp_path) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 2)])
    for p in (0, 1):
        produce(kafka_broker.bootstrap, topic, [doc(station_id=f"st-{p}", seq=i) for i in range(120)], partition=p)
    settings = settings_for(kafka_broker, unique_topics, tmp_path, scorer_max_offsets_per_trigger=100)
    batches = run_to_end(spark, settings, registry)

    assert [len(b) for b in batches] == [100, 100, 40]
    for p in (0, 1):
        read = [(r["offset"], r["seq"]) for b in batches for r in b if r["partition"] == p]
        assert read == [(i, i) for i in range(120)]  # every message once, in order
    assert all(r["reason"] is None and r["station_id"] == f"st-{r['partition']}" for b in batches for r in b)

    # The cap splits a batch over the partitions by their backlog.
    assert {p: sum(r["partition"] == p for r in batches[0]) for p in (0, 1)} == {0: 50, 1: 50}

    # Resumed from its checkpoint, the query reads only what is new.
    produce(kafka_broker.bootstrap, topic, [doc(station_id="st-0", seq=200)], partition=0)
    assert [[(r["partition"], r["offset"]) for r in b] for b in run_to_end(spark, settings, registry)] == [[(0, 120)]]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_the_clock_is_the_brokers_append_time_or_a_producer_stamp_no_later_than_now(
        spark, registry, kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    """A reading stamped now, in a record the producer dates an hour back: on a LogAppendTime topic the broker's
    append time judges it (valid); on a CreateTime topic the producer's hour-old stamp does (future_timestamp). A
    record the producer dates a day ahead counts no later than the scorer's clock."""
    now = datetime.now(UTC)
    reading = doc(ts=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
    hour_ago, day_ahead = ms(now - timedelta(hours=1)), ms(now + timedelta(days=1))
    appended = unique_topics["readings_topic"]
    created = appended + ".created"
    ensure_topics(kafka_broker.bootstrap, [
        TopicSpec(appended, 1, {"message.timestamp.type": "LogAppendTime"}),
        TopicSpec(created, 1, {"message.timestamp.type": "CreateTime",
                               "message.timestamp.after.max.ms": str(2 * 24 * 3600 * 1000)})])
    for topic in (appended, created):
        produce(kafka_broker.bootstrap, topic, [reading], timestamp_ms=hour_ago)
        produce(kafka_broker.bootstrap, topic, [reading], timestamp_ms=day_ahead)

    before = ms(datetime.now(UTC))
    rows = {}
    for topic in (appended, created):
        settings = settings_for(kafka_broker, {**unique_topics, "readings_topic": topic}, tmp_path / topic)
        rows[topic] = [r for b in run_to_end(spark, settings, registry) for r in b]
    after = ms(datetime.now(UTC))

    a_old, a_ahead = rows[appended]
    assert now.timestamp() * 1000 - 60_000 < a_old["timestamp_ms"] <= before  # the broker's append time
    assert a_old["clock_ms"] == a_old["timestamp_ms"] and a_ahead["clock_ms"] == a_ahead["timestamp_ms"]
    assert a_old["reason"] is None and a_ahead["reason"] is None

    c_old, c_ahead = rows[created]
    assert (c_old["timestamp_ms"], c_old["clock_ms"]) == (hour_ago, hour_ago)
    assert c_old["reason"] == "future_timestamp" and c_old["station_id"] is None
    assert c_ahead["timestamp_ms"] == day_ahead
    assert before <= c_ahead["clock_ms"] <= after  # capped at the scorer's clock when it was decoded
    assert c_ahead["reason"] is None


def test_every_message_is_a_row_or_a_dead_letter_with_the_reference_reason(
        spark, registry, kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    # The table's timestamps were made when it was imported; "future" must be ahead of the clock now.
    ahead = (datetime.now(UTC) + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cases = [(name, doc(ts=ahead) if name == "future" else payload, expected) for name, payload, expected in CASES]
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, [payload for _, payload, _ in cases], partition=0)
    settings = settings_for(kafka_broker, unique_topics, tmp_path)
    rows = [r for b in run_to_end(spark, settings, registry) for r in b]

    assert [r["offset"] for r in rows] == list(range(len(cases)))
    for (name, payload, expected), row in zip(cases, rows, strict=True):
        now = EPOCH + timedelta(milliseconds=row["clock_ms"])
        try:
            want: Any = validate_reading(payload if payload is not None else b"", registry, now)
        except ContractError as exc:
            want = exc.reason.value
        assert want == (expected.value if expected else want), name  # the reference is the oracle
        if expected is None:
            assert row["reason"] is None, (name, row["reason"], row["detail"])
            assert (row["station_id"], row["seq"]) == (want.station_id, want.seq), name
            assert (row["ts"] - EPOCH) // ONE_US == (want.ts - EPOCH) // ONE_US, name
            assert {n: row[n] for n in registry.metrics} == {n: want.metrics.get(n) for n in registry.metrics}, name
        else:
            assert (row["reason"], row["station_id"]) == (want, None), name
            assert row["detail"], name
            if payload is not None:
                assert row["payload_size"] == len(payload), name


def test_a_checkpoint_beyond_a_recreated_topic_is_refused_before_anything_is_read(
        spark, registry, kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(30)])
    settings = settings_for(kafka_broker, unique_topics, tmp_path, scorer_max_offsets_per_trigger=20)
    assert sum(map(len, run_to_end(spark, settings, registry))) == 30
    lag, ends = start_lag(settings)  # the checkpoint Spark wrote resumes at offset 30: fine
    ends.close()

    recreate(kafka_broker.bootstrap, topic)
    produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(5)])
    with pytest.raises(CheckpointBeyondTopic, match=r"partition 0 ends at offset 5 but the checkpoint resumes at 30"
                                                    rf".*delete {settings.checkpoint_dir}"):
        start_lag(settings)


def test_a_checkpoint_of_the_previous_reader_is_refused_with_the_fix(kafka_broker, unique_topics,
                                                                     tmp_path) -> None:  # noqa: ANN001
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 1)])
    settings = settings_for(kafka_broker, unique_topics, tmp_path)
    offsets = settings.checkpoint_dir / "spark" / "offsets"
    offsets.mkdir(parents=True)
    (offsets / "0").write_text('v1\n{"batchWatermarkMs":0,"batchTimestampMs":1,"conf":{}}\n{"0": 12}')
    with pytest.raises(CheckpointOfAnotherReader, match=rf"delete {settings.checkpoint_dir}"):
        start_lag(settings)


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_running_query_stops_when_the_topic_falls_behind_its_offsets(spark, registry, kafka_broker, unique_topics,
                                                                      tmp_path) -> None:  # noqa: ANN001
    """The topic is recreated under a running query: its next trigger fails rather than skip to the new end."""
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(30)])
    settings = settings_for(kafka_broker, unique_topics, tmp_path)
    seen: list[int] = []
    query = (source_frame(spark, settings, registry).writeStream
             .foreachBatch(lambda df, _id: seen.extend(r.offset for r in df.select("offset").collect()))
             .option("checkpointLocation", str(settings.checkpoint_dir / "spark"))
             .trigger(processingTime="200 milliseconds").start())
    try:
        wait(lambda: len(seen) == 30, 120)
        recreate(kafka_broker.bootstrap, topic)
        produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(5)])
        wait(lambda: not query.isActive, 120)
        assert "offset was changed from 30 to" in str(query.exception())
        assert sorted(seen) == list(range(30))  # nothing of the new log was read
    finally:
        query.stop()


def test_readings_lost_to_retention_are_skipped_on_restart(spark, registry, kafka_broker, unique_topics,
                                                           tmp_path) -> None:  # noqa: ANN001
    """Retention deleted readings the scorer never read (it was down too long): they are gone either way, so the
    scorer starts from the first retained one (saying how many it lost) instead of failing on every start."""
    from confluent_kafka import TopicPartition

    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 1)])
    produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(10)])
    settings = settings_for(kafka_broker, unique_topics, tmp_path)
    assert sum(map(len, run_to_end(spark, settings, registry))) == 10
    produce(kafka_broker.bootstrap, topic, [doc(seq=i) for i in range(10, 30)])
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    for future in admin.delete_records([TopicPartition(topic, 0, 25)]).values():
        future.result(30)
    rows = [r for b in run_to_end(spark, settings, registry) for r in b]
    assert [r["offset"] for r in rows] == list(range(25, 30))



@pytest.mark.parametrize(("over", "tasks"), [({}, 2), ({"scorer_decode_tasks": 3}, 3),
                                             ({"scorer_spark_master": "spark://cluster:7077"}, 4)])
def test_a_micro_batch_is_decoded_by_as_many_tasks_as_it_has_cores(spark, registry, kafka_broker, unique_topics,
                                                                   tmp_path, over, tasks) -> None:  # noqa: ANN001
    """Four partitions, local[2]: two tasks (two Python workers), each reading two partitions; every message once."""
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 4)])
    for p in range(4):
        produce(kafka_broker.bootstrap, topic, [doc(station_id=f"st-{p}", seq=i) for i in range(30)], partition=p)
    settings = settings_for(kafka_broker, unique_topics, tmp_path, **over)
    seen_tasks: list[int] = []
    rows: list[dict] = []

    def collect(df: Any, _batch_id: int) -> None:
        seen_tasks.append(df.rdd.getNumPartitions())
        rows.extend(df.toArrow().to_pylist())

    query = (source_frame(spark, settings, registry).writeStream.foreachBatch(collect)
             .option("checkpointLocation", str(settings.checkpoint_dir / "spark"))
             .trigger(availableNow=True).start())
    query.awaitTermination(300)
    assert query.exception() is None, query.exception()
    assert set(seen_tasks) == {tasks}
    assert sorted((r["partition"], r["offset"]) for r in rows) == [(p, i) for p in range(4) for i in range(30)]
