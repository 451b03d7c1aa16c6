"""The scorer's lag gauge: partition ends now (a probe in the driver) minus where the last finished batch ended.

Before, the gauge came from ``query.lastProgress`` alone: written when a micro-batch finishes, so during a long batch
it kept the old value, and in pyspark 4 its offsets are JSON strings, which the old code did not even read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_scorer.job.lag import ConsumerLag, committed_offsets, source_offsets, start_lag
from citysense_scorer.settings import scorer_settings
from confluent_kafka import Producer
from pyspark.sql.streaming.listener import StreamingQueryProgress

TOPIC = "citysense.readings"


def progress(end: dict, latest: dict | None = None, batch_id: int = 0) -> StreamingQueryProgress:
    """A real pyspark progress object, as ``query.lastProgress`` returns it (offsets become JSON text)."""
    return StreamingQueryProgress.fromJson({
        "id": "00000000-0000-0000-0000-000000000001", "runId": "00000000-0000-0000-0000-000000000002",
        "name": "citysense-scorer", "timestamp": "2026-01-01T00:00:00.000Z", "batchId": batch_id,
        "batchDuration": 10, "stateOperators": [],
        "sources": [{"description": "citysense_kafka", "startOffset": None, "endOffset": end,
                     "latestOffset": latest or end, "numInputRows": 0, "inputRowsPerSecond": 0.0,
                     "processedRowsPerSecond": 0.0}],
        "sink": {"description": "ForeachBatchSink", "numOutputRows": -1},
    })


class Ends:
    def __init__(self, ends: dict[int, int] | None) -> None:
        self.now = ends

    def __call__(self) -> dict[int, int] | None:
        return self.now


def test_lag_follows_the_partition_ends_while_a_batch_runs() -> None:
    ends = Ends({0: 100, 1: 50})
    lag = ConsumerLag(TOPIC, ends, processed={0: 100, 1: 50})
    assert lag.value() == 0
    # A long batch is running: no new progress, but readings keep arriving. The gauge must see them.
    lag.update(progress({"0": 100, "1": 50}))
    ends.now = {0: 1_100, 1: 550}
    assert lag.value() == 1_500
    ends.now = {0: 2_100, 1: 1_050}
    assert lag.value() == 3_000
    # The batch finishes: progress says where it ended.
    lag.update(progress({"0": 2_000, "1": 1_050}, batch_id=1))
    assert lag.value() == 100


def test_lag_is_unknown_until_ends_and_processed_offsets_are_known() -> None:
    ends = Ends(None)
    lag = ConsumerLag(TOPIC, ends)
    assert lag.value() is None  # probe not ready
    ends.now = {0: 10, 1: 10}
    assert lag.value() is None  # nothing processed known yet (no checkpoint seed, no progress)
    lag.update(None)
    lag.update(progress({"0": 4, "1": 10}))
    assert lag.value() == 6


def test_processed_offsets_never_go_back() -> None:
    lag = ConsumerLag(TOPIC, Ends({0: 10}), processed={0: 8})
    lag.update(progress({"0": 5}))  # an older progress (e.g. a re-run batch) does not undo the seed
    assert lag.value() == 2


def test_source_offsets_of_both_sources() -> None:
    assert source_offsets('{"0": 3, "1": 4}', TOPIC) == {0: 3, 1: 4}  # the bundled source
    assert source_offsets({TOPIC: {"0": 3, "2": 9}}, TOPIC) == {0: 3, 2: 9}  # Spark's built-in kafka source
    assert source_offsets(json.dumps({TOPIC: {"1": 7}}), TOPIC) == {1: 7}
    assert source_offsets("null", TOPIC) is None
    assert source_offsets("not json", TOPIC) is None


def write_batch(checkpoint: Path, batch_id: int, offsets: dict, committed: bool) -> None:
    (checkpoint / "offsets").mkdir(parents=True, exist_ok=True)
    (checkpoint / "commits").mkdir(parents=True, exist_ok=True)
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1795432831891, "conf": {"spark.sql.shuffle.partitions": "4"}}
    (checkpoint / "offsets" / str(batch_id)).write_text(f"v1\n{json.dumps(meta)}\n{json.dumps(offsets)}")
    if committed:
        (checkpoint / "commits" / str(batch_id)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_committed_offsets_are_those_of_the_last_finished_batch(tmp_path: Path) -> None:
    ckpt = tmp_path / "spark"
    assert committed_offsets(ckpt, TOPIC) is None  # fresh checkpoint
    write_batch(ckpt, 0, {"0": 0, "1": 0, "2": 1}, committed=True)
    write_batch(ckpt, 1, {"0": 0, "1": 0, "2": 3}, committed=True)
    write_batch(ckpt, 2, {"0": 5, "1": 6, "2": 7}, committed=False)  # planned, not finished
    assert committed_offsets(ckpt, TOPIC) == {0: 0, 1: 0, 2: 3}
    nested = tmp_path / "kafka"
    write_batch(nested, 4, {TOPIC: {"0": 11}}, committed=True)
    assert committed_offsets(nested, TOPIC) == {0: 11}


@pytest.mark.slow
def test_the_driver_probe_reports_lag_without_any_batch(kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    topic = unique_topics["readings_topic"]
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topic, 2)])
    settings = scorer_settings(kafka_bootstrap=kafka_broker.bootstrap, data_dir=tmp_path, **unique_topics)
    write_batch(settings.checkpoint_dir / "spark", 0, {topic: {"0": 2, "1": 0}}, committed=True)  # 2 processed
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap})
    for i in range(30):
        producer.produce(topic, f"v{i}".encode(), partition=i % 2)
    assert producer.flush(10) == 0
    lag, probe = start_lag(settings)
    try:
        deadline = time.monotonic() + 30
        while lag.value() != 28 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lag.value() == 28
        for i in range(10):
            producer.produce(topic, f"w{i}".encode(), partition=1)
        assert producer.flush(10) == 0
        deadline = time.monotonic() + 30
        while lag.value() != 38 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert lag.value() == 38
        lag.update(progress({"0": 15, "1": 25}))
        assert lag.value() == 0
    finally:
        probe.close()


def test_with_the_overlapped_sink_the_lag_counts_the_batch_still_in_the_sink(tmp_path: Path) -> None:
    """Spark's progress is a batch ahead of the store when the sink runs overlapped: the gauge follows the batch the
    sink last finished, read from the checkpoint's offset log."""
    from citysense_scorer.job.lag import batch_offsets, follow_processed

    ckpt = tmp_path / "spark"
    write_batch(ckpt, 0, {"0": 100, "1": 50}, committed=True)
    write_batch(ckpt, 1, {"0": 600, "1": 550}, committed=True)  # Spark is done with it; the sink is writing it

    class Sink:
        last_finished: int | None = None

    sink, ends = Sink(), Ends({0: 700, 1: 550})
    lag = ConsumerLag(TOPIC, ends)
    follow_processed(lag, progress({"0": 600, "1": 550}, batch_id=1), sink, ckpt, TOPIC)  # type: ignore[arg-type]
    assert lag.value() is None  # nothing the store holds yet: unknown, not 0
    sink.last_finished = 0
    follow_processed(lag, progress({"0": 600, "1": 550}, batch_id=1), sink, ckpt, TOPIC)  # type: ignore[arg-type]
    assert lag.value() == 600 + 500  # batch 1 (1,000 readings) is still in the sink, plus 100 newer readings
    sink.last_finished = 1
    follow_processed(lag, None, sink, ckpt, TOPIC)  # type: ignore[arg-type]
    assert lag.value() == 100
    # without the overlapped sink, progress is what the store holds
    inline = ConsumerLag(TOPIC, ends)
    follow_processed(inline, progress({"0": 600, "1": 550}, batch_id=1), None, ckpt, TOPIC)
    assert inline.value() == 100
    assert batch_offsets(ckpt, 7, TOPIC) is None  # not planned (or purged): no change to the gauge


def test_the_real_time_query_restarts_a_few_times_then_the_scorer_gives_up() -> None:
    from citysense_scorer.job.stream import RestartBudget

    budget = RestartBudget(3, 600.0)
    assert [budget.allow(t) for t in (0.0, 10.0, 20.0)] == [True, True, True]
    assert budget.allow(30.0) is False  # a fourth failure within ten minutes stops the scorer
    assert budget.allow(605.0) is True  # the first restart has left the window


def test_local_master_gets_twice_the_real_time_slots() -> None:
    from citysense_scorer.job.stream import spark_master
    from citysense_scorer.settings import ScorerSettings

    assert spark_master(ScorerSettings(scorer_spark_master="local[2]"), 13) == "local[28]"
    assert spark_master(ScorerSettings(scorer_spark_master="local[2]"), 0) == "local[2]"
    assert spark_master(ScorerSettings(scorer_spark_master="spark://host:7077"), 13) == "spark://host:7077"


def test_the_micro_batch_runs_less_often_when_the_real_time_path_carries_the_short_windows() -> None:
    from citysense_scorer.job.stream import trigger_ms
    from citysense_scorer.settings import ScorerSettings

    assert trigger_ms(ScorerSettings(), realtime_rules=True) == 5000
    assert trigger_ms(ScorerSettings(), realtime_rules=False) == 500  # every alert rides the micro-batch
    assert trigger_ms(ScorerSettings(scorer_trigger_ms=300), realtime_rules=True) == 300  # set: as set
    assert trigger_ms(ScorerSettings(scorer_trigger_ms=0), realtime_rules=True) == 0  # back to back
