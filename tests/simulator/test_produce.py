"""The simulator produces into a real Kafka-protocol broker; consumed back, every reading is valid."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
from citysense_common.contract import parse_reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_simulator import runner
from citysense_simulator.settings import load
from citysense_simulator.telemetry import SimulatorTelemetry
from confluent_kafka import Consumer, TopicPartition

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "contracts/reading.v1.schema.json").read_text("utf-8"))


def consume_all(bootstrap: str, topic: str, partitions: int, expected: int, deadline_s: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages, deadline = [], time.monotonic() + deadline_s
    while len(messages) < expected and time.monotonic() < deadline:
        messages.extend(m for m in consumer.consume(1000, timeout=0.5) if not m.error())
    consumer.close()
    return messages


def test_readings_reach_the_broker_keyed_by_station(kafka_broker, unique_topics) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 6)])
    settings = load(kafka_bootstrap=kafka_broker.bootstrap, stations=40, rate_hz=5, seed=1, simulator_metrics_port=0,
                    instance_id="sim-2", **unique_topics)
    telemetry = SimulatorTelemetry()
    counts = runner.run(settings, threading.Event(), telemetry=telemetry, duration=1.9)
    assert counts.failed == 0 and counts.delivered >= 40 * 5
    assert telemetry.produced._value.get() == counts.delivered  # noqa: SLF001

    messages = consume_all(kafka_broker.bootstrap, unique_topics["readings_topic"], 6, counts.delivered)
    assert len(messages) == counts.delivered
    per_station: dict[str, list[int]] = {}
    partition_of: dict[str, set[int]] = {}
    for message in messages:
        jsonschema.validate(json.loads(message.value()), SCHEMA)
        reading = parse_reading(message.value())
        assert message.key().decode() == reading.station_id
        per_station.setdefault(reading.station_id, []).append(reading.seq)
        partition_of.setdefault(reading.station_id, set()).add(message.partition())
    assert len(per_station) == 40
    assert all(sorted(seqs) == list(range(len(seqs))) for seqs in per_station.values())  # no gaps, no dups
    assert all(len(parts) == 1 for parts in partition_of.values())  # a station stays on one partition
    assert len({p for parts in partition_of.values() for p in parts}) > 1  # stations spread over partitions


def test_cli_stops_cleanly_on_sigterm_and_flushes(kafka_broker, unique_topics) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 6)])
    env = {"CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "CITYSENSE_SIMULATOR_METRICS_PORT": "0",
           "CITYSENSE_READINGS_TOPIC": unique_topics["readings_topic"], "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([sys.executable, "-m", "citysense_simulator.cli", "run", "--stations", "20",
                             "--rate-hz", "10", "--instance-id", "t-1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    proc.terminate()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "stopped after" in out
    sent = int(out.split("stopped after ")[1].split()[0])
    assert sent > 0
    assert len(consume_all(kafka_broker.bootstrap, unique_topics["readings_topic"], 6, sent)) == sent


def test_cli_rejects_bad_settings_with_the_variable_name() -> None:
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "run"], capture_output=True, text=True,
                          env={"CITYSENSE_RATE_HZ": "-1", "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert "CITYSENSE_RATE_HZ" in proc.stderr


def test_cli_rejects_bad_scenarios() -> None:
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "run", "--scenario", "volcano"],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 2
    assert "unknown scenario 'volcano'" in proc.stderr
