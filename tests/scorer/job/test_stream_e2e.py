"""End to end with a real Kafka broker: readings (some malformed) -> `citysense-scorer stream` -> store, alerts, DLQ.

The second test SIGKILLs the job mid-stream and restarts it: stored rows and alert events must be exactly as expected
(an event twice only as an identical copy).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.store.sqlite import SQLiteStore
from citysense_common.testing.topics import distinct_events, read_topic
from confluent_kafka import Producer

pytestmark = pytest.mark.slow

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=3)


def reading(station: str, seq: int, pm25: float, ts: datetime) -> bytes:
    """A plausible reading around the given PM2.5 level: every metric varies a little from second to second, as real
    sensors do (station health runs in the scorer, and a value repeated 30 times in a row is a frozen sensor)."""
    noise = random.Random(f"{station}:{seq}")  # deterministic: a re-produced reading is the same message
    return Reading(schema_version=1, station_id=station, ts=ts, seq=seq,
                   metrics={"pm2_5": round(pm25 * (1 + noise.uniform(-0.04, 0.04)), 2),
                            "temperature": round(12.0 + seq * 0.005 + noise.gauss(0, 0.05), 2),
                            "humidity": round(70.0 - seq * 0.01 + noise.gauss(0, 0.3), 1)}).to_json()


def episode(station: str, hot_s: int, clean_s: int, t0: datetime) -> list[tuple[str, bytes]]:
    """hot_s seconds of PM2.5 around 500 at 1 Hz, then clean_s seconds of PM2.5 around 5."""
    out = []
    for i in range(hot_s + clean_s):
        out.append((station, reading(station, i, 500.0 if i < hot_s else 5.0, t0 + timedelta(seconds=i))))
    return out


MALFORMED = [b"{not json", b"[1,2]", json.dumps({"schema_version": 1, "station_id": "x", "ts": "2026-01-01T00:00:00Z",
                                                 "seq": 0, "metrics": {"radon": 3}}).encode()]


def produce(bootstrap: str, topic: str, messages: list[tuple[str | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def start_scorer(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def scorer_env(tmp_path: Path, bootstrap: str, topics: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap,
        "CITYSENSE_DATA_DIR": str(tmp_path / "data"),
        "CITYSENSE_SQLITE_PATH": str(tmp_path / "data" / "citysense.db"),
        "CITYSENSE_READINGS_TOPIC": topics["readings_topic"],
        "CITYSENSE_ALERTS_TOPIC": topics["alerts_topic"],
        "CITYSENSE_DLQ_TOPIC": topics["dlq_topic"],
        "CITYSENSE_SCORER_METRICS_PORT": "0",
        "CITYSENSE_SCORER_TRIGGER_MS": "300",
        "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "40",  # many small batches, so a kill lands mid-stream
    }


def wait_for(predicate, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"scorer exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out; scorer log:\n{log.read_text()[-4000:]}")


def stored_count(db: Path) -> int:
    if not db.exists():
        return 0
    import sqlite3

    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.Error:
        return 0


def expected_events(alerts: list[dict]) -> Counter:
    return Counter((a["station_id"], a["rule_id"], a["state"]) for a in alerts)


def test_stream_end_to_end_then_sigkill_and_restart(kafka_broker, unique_topics, tmp_path) -> None:
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, [TopicSpec(unique_topics[t], 3) for t in ("readings_topic", "alerts_topic", "dlq_topic")])
    hot = episode("hot-1", 20, 100, START)
    calm = [("calm-1", reading("calm-1", i, 8.0, START + timedelta(seconds=i))) for i in range(120)]
    first = hot[:60] + calm[:60] + [(None, m) for m in MALFORMED]
    produce(bootstrap, unique_topics["readings_topic"], first)
    env = scorer_env(tmp_path, bootstrap, unique_topics)
    log = tmp_path / "scorer.log"
    db = tmp_path / "data" / "citysense.db"
    proc = start_scorer(env, log)
    try:
        # Let a few batches land, then kill -9 the whole process group (JVM included) mid-stream.
        wait_for(lambda: stored_count(db) >= 40, 240, proc, log)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        produce(bootstrap, unique_topics["readings_topic"], hot[60:] + calm[60:])
        proc = start_scorer(env, log)
        wait_for(lambda: stored_count(db) >= 240, 240, proc, log)
        time.sleep(2)  # the batch that stored the last rows also produced its events before returning
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    store = SQLiteStore(db)
    try:
        assert stored_count(db) == 240  # every valid reading exactly once
        station = store.get_station("hot-1")
        assert station is not None and station.last_seq == 119
    finally:
        store.close()

    dlq = read_topic(bootstrap, unique_topics["dlq_topic"], expect=3)
    assert sorted(d["reason"] for d in dlq) == ["malformed_json", "not_an_object", "unknown_metric"]
    assert all(d["payload"] and d["source"]["topic"] == unique_topics["readings_topic"] for d in dlq)

    # The real-time path may write an event again after the kill: only identically (distinct_events checks)
    alerts = distinct_events(read_topic(bootstrap, unique_topics["alerts_topic"], expect=4))
    got = expected_events(alerts)
    # 20 s of PM2.5 = 500: the 1-minute rule opens (critical, after `for` 5 s) and resolves once the 1-minute mean
    # falls to 35.4; the 1-hour rule opens too (after its `for` of 1 min the 1-h mean is still far above 125.4).
    assert got[("hot-1", "pm25-acute-1m", "open")] == 1
    assert got[("hot-1", "pm25-acute-1m", "resolved")] == 1
    opened = next(a for a in alerts if a["rule_id"] == "pm25-acute-1m" and a["state"] == "open")
    assert opened["severity"] == "critical"
    # Here the readings are a backlog read in batches of 40, and rules are evaluated once per station per batch at its
    # newest reading, so the open carries that batch's event time; live 1 Hz timing (<= 10 s) is tested in
    # test_engine.test_pm25_500_at_1hz_opens_critical_within_10s.
    assert START < datetime.fromisoformat(opened["event_time"]) <= START + timedelta(seconds=20)
    assert not [a for a in alerts if a["station_id"] == "calm-1" and a["kind"] == "threshold"]
    # Station health runs by default; readings that vary like real ones (the episode's jumps included) are no fault.
    assert not [a for a in alerts if a["kind"] == "sensor_fault"]


def test_a_checkpoint_beyond_a_recreated_topic_stops_the_scorer_with_the_fix(kafka_broker, unique_topics,
                                                                            tmp_path) -> None:
    """The readings topic is deleted and recreated while the scorer is down: on restart its checkpoint resumes at
    offset 60 of a 10-message log. It must refuse to start and say how to recover, not skip to offset 60."""
    from confluent_kafka.admin import AdminClient

    bootstrap = kafka_broker.bootstrap
    readings = unique_topics["readings_topic"]
    ensure_topics(bootstrap, [TopicSpec(unique_topics[t], 1) for t in ("readings_topic", "alerts_topic", "dlq_topic")])
    calm = [("calm-1", reading("calm-1", i, 8.0, START + timedelta(seconds=i))) for i in range(70)]
    produce(bootstrap, readings, calm[:60])
    env = {**scorer_env(tmp_path, bootstrap, unique_topics), "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "0"}
    log = tmp_path / "scorer.log"
    db = tmp_path / "data" / "citysense.db"
    proc = start_scorer(env, log)
    try:
        wait_for(lambda: stored_count(db) >= 60, 240, proc, log)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([readings])[readings].result(30)
    deadline = time.monotonic() + 30
    while readings in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    ensure_topics(bootstrap, [TopicSpec(readings, 1)])
    produce(bootstrap, readings, calm[60:])

    proc = start_scorer(env, log)
    try:
        code = proc.wait(180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert code == 2, text[-3000:]
    assert "partition 0 ends at offset 10 but the checkpoint resumes at 60" in text
    assert f"delete {tmp_path / 'data' / 'checkpoints' / 'scorer'}" in text
    assert stored_count(db) == 60  # nothing read from the new log
