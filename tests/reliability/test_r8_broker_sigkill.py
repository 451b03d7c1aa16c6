"""R8: SIGKILL the Kafka broker mid-stream and restart it: no acknowledged reading is lost, and the scorer and the
notifier carry on by themselves.

A producer sends readings of three stations at 1 Hz per station (event time), acknowledged with acks=all. While the
scorer and the notifier run, the broker's JVM is SIGKILLed (no shutdown hook, no flush) and restarted on the same
port and data a few seconds later; the producer keeps sending meanwhile (its client retries). A pollution episode
starts after the restart. Afterwards:
- every reading the broker acknowledged is stored exactly once;
- the scorer and the notifier are the processes started before the crash (nobody restarted them);
- the episode's alert reaches the webhook subscriber, signed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.testing.webhook_receiver import WebhookReceiver
from citysense_localstack.servers.kafka import start_kafka
from citysense_localstack.servers.net import free_port
from confluent_kafka import Producer

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("notifier_fixtures",
                                               Path(__file__).resolve().parents[1] / "notifier" / "conftest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nf
_spec.loader.exec_module(nf)

STATIONS = ("r8-a", "r8-b", "r8-c")
HOT = "r8-b"
TOTAL_S = 150  # seconds of readings per station
BEFORE = 60  # seconds of readings sent (and scored) before the feed turns live and the broker is killed
HOT_FROM = 120  # the episode starts well after the crash
START = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=TOTAL_S + 30)


def reading(station: str, seq: int) -> bytes:
    pm25 = 480.0 if station == HOT and seq >= HOT_FROM else 6.0 + (seq % 7) * 0.3
    return Reading(schema_version=1, station_id=station, ts=START + timedelta(seconds=seq), seq=seq,
                   metrics={"pm2_5": pm25, "temperature": round(11.0 + seq * 0.01 + (seq % 3) * 0.07, 2),
                            "humidity": round(60.0 - seq * 0.02 + (seq % 5) * 0.1, 2)}).to_json()


class Feed:
    """Produces one second of readings for every station each ``pace_s``, recording what the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str, pace_s: float) -> None:
        self.topic, self.pace_s = topic, pace_s
        self.acked: set[tuple[str, int]] = set()
        self.failed: list[str] = []
        self.seq = 0
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 5, "delivery.timeout.ms": 120_000})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_delivery(self, key: tuple[str, int], err: object) -> None:
        if err is None:
            self.acked.add(key)
        else:
            self.failed.append(f"{key}: {err}")

    def send(self, until: int) -> None:
        """Send every second of readings up to ``until`` now."""
        while self.seq < until:
            self._step()
        assert self._producer.flush(30) == 0

    def _step(self) -> None:
        for station in STATIONS:
            self._producer.produce(self.topic, key=station.encode(), value=reading(station, self.seq),
                                   on_delivery=lambda err, _msg, key=(station, self.seq): self._on_delivery(key, err))
        self.seq += 1
        self._producer.poll(0)

    def _run(self) -> None:
        while not self._stop.is_set() and self.seq < TOTAL_S:
            self._step()
            self._stop.wait(self.pace_s)

    def start(self) -> None:
        self._thread.start()

    def finish(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert self._producer.flush(timeout) == 0, "readings still unacknowledged"


def stored(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT station_id, seq FROM readings").fetchall()
    except sqlite3.Error:
        return []


def test_broker_sigkill_loses_no_acknowledged_reading_and_everyone_resumes(tmp_path: Path) -> None:
    port = free_port()
    broker = start_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "kafka.log")
    procs: list[subprocess.Popen] = []
    receiver = WebhookReceiver()
    try:
        bootstrap = broker.bootstrap
        topics = {"readings": "r8.readings", "alerts": "r8.alerts", "dlq": "r8.dlq"}
        ensure_topics(bootstrap, [TopicSpec(topics["readings"], 3), TopicSpec(topics["alerts"], 3),
                                  TopicSpec(topics["dlq"], 1)])
        data = tmp_path / "data"
        data.mkdir()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")},
               "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_DATA_DIR": str(data),
               "CITYSENSE_READINGS_TOPIC": topics["readings"], "CITYSENSE_ALERTS_TOPIC": topics["alerts"],
               "CITYSENSE_DLQ_TOPIC": topics["dlq"], "CITYSENSE_SCORER_METRICS_PORT": "0",
               "CITYSENSE_NOTIFIER_METRICS_PORT": "0", "CITYSENSE_SCORER_TRIGGER_MS": "300",
               "CITYSENSE_WEBHOOK_TESTS_TOPIC": "r8.webhook-tests", "CITYSENSE_NOTIFIER_GROUP": "r8-notifier",
               "CITYSENSE_WEBHOOK_BACKOFF_BASE_S": "0.2", "CITYSENSE_SUBSCRIPTIONS_REFRESH_S": "0.2",
               "CITYSENSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
        harness = nf.NotifierHarness(bootstrap, env, nf.open_store(nf.load_settings(nf.StoreSettings,
                                                                                    data_dir=data)),
                                     topics["alerts"], tmp_path / "notifier.log")
        sub = harness.subscribe(receiver.url)
        receiver.secret = sub.secret
        scorer = subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                                  stdout=open(tmp_path / "scorer.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                  start_new_session=True)
        procs.append(scorer)
        notifier = harness.start()
        procs.append(notifier)

        db = data / "citysense.db"
        feed = Feed(bootstrap, topics["readings"], pace_s=0.3)
        feed.send(BEFORE)
        deadline = time.monotonic() + 240
        while len(stored(db)) < BEFORE * len(STATIONS):  # the scorer is streaming before the crash
            assert scorer.poll() is None, (tmp_path / "scorer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"{len(stored(db))} readings stored before the crash"
            time.sleep(0.3)
        feed.start()
        time.sleep(3)
        broker.kill()
        crashed_at = feed.seq
        time.sleep(4)
        broker = start_kafka(tmp_path / "kafka", port=port, log_path=tmp_path / "kafka.log")
        feed.finish(180)
        assert feed.seq == TOTAL_S and crashed_at < HOT_FROM
        assert not feed.failed, feed.failed[:5]

        deadline = time.monotonic() + 300
        while set(stored(db)) != feed.acked:
            missing = len(feed.acked - set(stored(db)))
            assert scorer.poll() is None, f"scorer exited:\n{(tmp_path / 'scorer.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{missing} acknowledged readings not stored"
            time.sleep(0.5)
        rows = stored(db)
        assert len(rows) == len(set(rows)) == len(STATIONS) * TOTAL_S  # every acknowledged reading, once

        opened = receiver.wait_until(
            lambda r: r.payload.get("data", {}).get("station_id") == HOT
            and r.payload.get("data", {}).get("state") == "open", timeout=120)
        assert opened is not None, harness.logs()
        assert opened.verified is True
        assert scorer.poll() is None and notifier.poll() is None  # nobody restarted them
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM) if proc.pid == procs[0].pid else proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
        receiver.close()
        broker.stop()
