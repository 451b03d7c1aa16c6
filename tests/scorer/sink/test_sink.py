"""The micro-batch sink's dead letters: hostile bytes and huge values end up on the DLQ, bounded and decodable, and a
dead letter Kafka refuses for good is counted instead of failing the batch forever (alert events still fail it)."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from citysense_common.contract import (
    DEAD_LETTER_PAYLOAD_BYTES,
    AlertEvent,
    DeadLetterReason,
    dead_letter,
)
from citysense_common.kafka import default_topics, ensure_topics
from citysense_scorer.alerts.rules import load_rules
from citysense_scorer.job.stream import build_sink
from citysense_scorer.settings import ScorerSettings, scorer_settings
from citysense_scorer.sink.micro_batch import BatchSink
from citysense_scorer.source.decode import Decoder
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

NOW = datetime.now(UTC)
RAW_SCHEMA = pa.schema([("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()),
                        ("partition", pa.int32()), ("offset", pa.int64()), ("timestamp_ms", pa.int64())])
RAW_NAMES = RAW_SCHEMA.names


def settings_for(tmp_path: Path, bootstrap: str, topics: dict[str, str], **extra: Any) -> ScorerSettings:
    return scorer_settings(kafka_bootstrap=bootstrap, data_dir=tmp_path, sqlite_path=tmp_path / "citysense.db",
                           scorer_metrics_port=0, **topics, **extra)


def sink_for(settings: ScorerSettings) -> BatchSink:
    """The sink as the entry point builds it: registry and rules from the settings."""
    registry = settings.registry()
    return build_sink(settings, registry, load_rules(settings.rules_path, registry))


def undelivered() -> float:
    return REGISTRY.get_sample_value("citysense_scorer_dead_letters_undelivered_total", {"cause": "too_large"}) or 0.0


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-sink", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.message.max.bytes": 8_000_000})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expect and time.monotonic() < deadline:
            out.extend(json.loads(msg.value()) for msg in consumer.consume(100, timeout=0.5) if msg.error() is None)
    finally:
        consumer.close()
    return out


def reading(station: str) -> bytes:
    return json.dumps({"schema_version": 1, "station_id": station, "ts": NOW.isoformat(), "seq": 0,
                       "metrics": {"pm2_5": 5.0}}).encode()


@pytest.mark.slow
def test_hostile_values_reach_the_dlq_bounded_and_the_batch_succeeds(spark, registry, kafka_broker,  # noqa: ANN001
                                                                     unique_topics, tmp_path) -> None:  # noqa: ANN001
    settings = settings_for(tmp_path, kafka_broker.bootstrap, unique_topics)
    ensure_topics(kafka_broker.bootstrap, default_topics(settings, readings_partitions=1))
    not_utf8 = b"\xa7\xff{not utf-8"
    huge = b'{"station_id":"big","padding":"' + b"x" * 1_048_576 + b'"}'
    ms = int(NOW.timestamp() * 1000)
    rows = [(None, not_utf8, settings.readings_topic, 0, 0, ms), (None, huge, settings.readings_topic, 0, 1, ms),
            (b"\xff-key", b"[1]", settings.readings_topic, 0, 2, ms),
            (b"st-ok", reading("st-ok"), settings.readings_topic, 0, 3, ms)]
    raw = pa.RecordBatch.from_pylist([dict(zip(RAW_NAMES, row, strict=True)) for row in rows], schema=RAW_SCHEMA)
    decoder = Decoder(registry, 300)
    scored = spark.createDataFrame(pa.Table.from_batches([decoder.decode_batch(raw)]))
    sink = sink_for(settings)
    try:
        sink(scored, 0)  # the foreachBatch call: toArrow, engine, store, Kafka (failed on every count before)
        assert sink.log.is_done(0)
        station = sink.store.get_station("st-ok")  # the valid reading of the same batch is stored
        assert station is not None and station.last_seq == 0
    finally:
        sink.producer.flush(10)
        sink.store.close()

    letters = {d["source"]["offset"]: d for d in read_topic(kafka_broker.bootstrap, settings.dlq_topic, 3)}
    assert sorted(letters) == [0, 1, 2]
    bad_utf8 = letters[0]
    assert (bad_utf8["reason"], bad_utf8["detail"]) == ("malformed_json", "not valid UTF-8")
    assert bad_utf8["payload"] == "\ufffd\ufffd{not utf-8" and bad_utf8["payload_truncated"] is False
    assert bad_utf8["payload_sha256"] == hashlib.sha256(not_utf8).hexdigest()
    big = letters[1]
    assert big["reason"] == "payload_too_large"
    assert big["payload"] == huge[:DEAD_LETTER_PAYLOAD_BYTES].decode() and big["payload_truncated"] is True
    assert (big["payload_size"], big["payload_sha256"]) == (len(huge), hashlib.sha256(huge).hexdigest())
    assert letters[2]["reason"] == "not_an_object" and letters[2]["key"] == "\ufffd-key"


def event(message: str = "m") -> AlertEvent:
    return AlertEvent(event_id="e-1", alert_id="a-1", state="open", kind="threshold", severity="warning",
                      rule_id="r", station_id="st-1", opened_at=NOW, event_time=NOW, message=message)


def letter(offset: int, payload: bytes) -> tuple[None, bytes, str]:
    made = dead_letter(DeadLetterReason.PAYLOAD_TOO_LARGE, "d", payload, topic="in", partition=0, offset=offset)
    return None, made.to_json(), f"in:0:{offset}"


@pytest.mark.slow
def test_a_dead_letter_above_the_producer_limit_is_counted_not_retried(kafka_broker, unique_topics,  # noqa: ANN001
                                                                        tmp_path) -> None:  # noqa: ANN001
    settings = settings_for(tmp_path, kafka_broker.bootstrap, unique_topics,
                            kafka_options={"message.max.bytes": "20000"})
    ensure_topics(kafka_broker.bootstrap, default_topics(settings, readings_partitions=1))
    sink = sink_for(settings)
    try:
        before = undelivered()
        sink._produce(1, [event()], [letter(7, b"x" * 60_000), letter(8, b"{")], replay=False)  # noqa: SLF001
        assert undelivered() == before + 1
        assert sink.log.is_done(1)
        assert [d["source"]["offset"] for d in read_topic(kafka_broker.bootstrap, settings.dlq_topic, 1)] == [8]
        # An alert event is never given up on: the batch fails (Spark re-runs it).
        with pytest.raises(KafkaException):
            sink._produce(2, [event("x" * 30_000)], [], replay=False)  # noqa: SLF001
        assert not sink.log.is_done(2)
    finally:
        sink.store.close()


class FakeMessage:
    def __init__(self, topic: str, value: bytes, headers: list) -> None:
        self._topic, self._value, self._headers = topic, value, headers

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 0

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list:
        return self._headers


class BrokerRejects:
    """A producer whose broker fails every message of ``topic`` with ``code`` (delivery report, not produce())."""

    def __init__(self, topic: str, code: int) -> None:
        self.topic, self.code, self.queued = topic, code, []

    def produce(self, topic: str, key: Any = None, value: bytes = b"", headers: Any = None,
                on_delivery: Any = None) -> None:
        self.queued.append((FakeMessage(topic, value, headers), on_delivery))

    def flush(self, timeout: float = 0) -> int:
        for msg, callback in self.queued:
            callback(KafkaError(self.code) if msg.topic() == self.topic else None, msg)
        self.queued.clear()
        return 0

    def poll(self, timeout: float = 0) -> int:
        return 0


def offline_sink(tmp_path: Path, producer: BrokerRejects) -> BatchSink:
    """A real sink (engine, engine log, SQLite) whose producer is ``producer``; no broker needed."""
    topics = {"readings_topic": "in", "alerts_topic": "alerts", "dlq_topic": "dlq"}
    sink = sink_for(settings_for(tmp_path, "127.0.0.1:1", topics))
    sink.producer = producer  # type: ignore[assignment]
    return sink


def test_broker_rejecting_a_dead_letter_as_too_large_does_not_fail_the_batch(tmp_path) -> None:  # noqa: ANN001
    sink = offline_sink(tmp_path, BrokerRejects("dlq", KafkaError.MSG_SIZE_TOO_LARGE))
    before = undelivered()
    sink._produce(3, [event()], [letter(1, b"{")], replay=False)  # noqa: SLF001
    assert undelivered() == before + 1
    assert sink.log.is_done(3)
    sink.store.close()


@pytest.mark.parametrize(("topic", "code"), [("alerts", KafkaError.MSG_SIZE_TOO_LARGE),
                                             ("dlq", KafkaError._MSG_TIMED_OUT)])
def test_other_delivery_failures_still_fail_the_batch(tmp_path, topic: str, code: int) -> None:  # noqa: ANN001
    sink = offline_sink(tmp_path, BrokerRejects(topic, code))
    with pytest.raises(RuntimeError, match="errors"):
        sink._produce(4, [event()], [letter(1, b"{")], replay=False)  # noqa: SLF001
    assert not sink.log.is_done(4)
    sink.store.close()


@pytest.mark.slow
def test_readings_from_the_future_raise_their_stations_clock_fault(registry, kafka_broker, unique_topics,  # noqa: ANN001
                                                                  tmp_path) -> None:  # noqa: ANN001
    """A station a day ahead: its readings go to the DLQ as future_timestamp, and it gets a sensor_fault alert of
    its own (rule fault-clock) on the store and the alerts topic, which resolves once its readings are in time."""
    settings = settings_for(tmp_path, kafka_broker.bootstrap, unique_topics)
    ensure_topics(kafka_broker.bootstrap, default_topics(settings, readings_partitions=1))
    appended = int(NOW.timestamp() * 1000)  # the broker's append time (LogAppendTime)
    ahead = json.dumps({"schema_version": 1, "station_id": "gw-skewed", "ts": (NOW + timedelta(days=1)).isoformat(),
                        "seq": 1, "metrics": {"pm2_5": 5.0}}).encode()
    schema = pa.schema([*RAW_SCHEMA, ("timestamp_type", pa.int32())])

    def batch(rows: list[tuple[bytes, bytes]], first_offset: int) -> pa.Table:
        raw = pa.RecordBatch.from_pylist([
            {"key": key, "value": value, "topic": settings.readings_topic, "partition": 0, "offset": first_offset + i,
             "timestamp_ms": appended + i, "timestamp_type": 1} for i, (key, value) in enumerate(rows)], schema=schema)
        return pa.Table.from_batches([Decoder(registry, 300).decode_batch(raw)])

    sink = sink_for(settings)
    try:
        sink.run(batch([(b"gw-skewed", ahead), (b"st-ok", reading("st-ok"))], 0), 0)
        alerts = read_topic(kafka_broker.bootstrap, settings.alerts_topic, 1)
        assert [(a["station_id"], a["kind"], a["rule_id"], a["state"]) for a in alerts] == [
            ("gw-skewed", "sensor_fault", "fault-clock", "open")]
        stored = sink.store.get_alert(alerts[0]["alert_id"])
        assert stored is not None and stored.state == "active" and stored.opened_at.timestamp() * 1000 == appended
        sink.run(batch([(b"gw-skewed", reading("gw-skewed"))], 2), 1)
        alerts = read_topic(kafka_broker.bootstrap, settings.alerts_topic, 2)
        assert [(a["alert_id"], a["state"]) for a in alerts[1:]] == [(alerts[0]["alert_id"], "resolved")]
        assert sink.store.get_alert(alerts[0]["alert_id"]).state == "resolved"
    finally:
        sink.producer.flush(10)
        sink.store.close()
    letters = read_topic(kafka_broker.bootstrap, settings.dlq_topic, 1)
    assert [d["reason"] for d in letters] == ["future_timestamp"]
