"""R9: gateways with wrong clocks do not silence the city, and each gets a clock fault of its own.

A live scorer reads the readings topic as citysense defines it (``default_topics``). Gateways send at 1 Hz, each
with its own Kafka producer whose record timestamps come from the gateway's clock, as a real gateway's client sets
them:

- ``r9-calm``: a correct clock, clean air;
- ``r9-day``: a clock a day ahead;
- ``r9-hour``: a clock 50 minutes ahead (less than the hour a ``CreateTime`` topic lets a record run ahead, so without
  the broker's clock its readings pass validation and drag the watermark ahead of every other station);
- ``r9-near``: a clock 4 minutes ahead, inside the future tolerance: its readings count, and it is no fault.

Once the skewed gateways have been sending for a while, ``r9-hot`` (a correct clock) starts reporting hazardous
PM2.5. Its ``pm25-acute-1m`` alert must open within the bound of the live-timing engine test
(tests/scorer/alerts/test_engine.py test_pm25_500_at_1hz_opens_critical_within_10s: 10 s of event time after its first
hazardous reading), and reach the alerts topic within ``ALERT_WITHIN_S`` of that reading being sent. ``r9-day`` and
``r9-hour`` each get an open ``sensor_fault`` alert with rule ``fault-clock``; their readings are dead letters
(``future_timestamp``); ``r9-calm``, ``r9-hot`` and ``r9-near`` get none.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import default_topics, ensure_topics
from citysense_common.settings import CommonSettings
from citysense_common.testing.topics import read_topic
from confluent_kafka import Consumer, Producer, TopicPartition

pytestmark = pytest.mark.slow

SKEW = {"r9-calm": timedelta(0), "r9-day": timedelta(days=1), "r9-hour": timedelta(minutes=50),
        "r9-near": timedelta(minutes=4)}
HOT = "r9-hot"
EVENT_BOUND_MS = 10_000  # test_pm25_500_at_1hz_opens_critical_within_10s
ALERT_WITHIN_S = 20.0  # first hazardous reading sent -> its alert on the topic (live, on a busy 2-core machine)
SKEWED_FOR_S = 20  # the skewed gateways send this long before the episode starts


class Gateway:
    """One gateway: its own producer, its readings stamped (ts and record timestamp) by its own clock."""

    def __init__(self, bootstrap: str, topic: str, station: str, skew: timedelta) -> None:
        self.topic, self.station, self.skew = topic, station, skew
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
        self.seq = 0
        self.errors: list[str] = []
        self.noise = random.Random(station)

    def send(self, pm25: float) -> float:
        """One reading now (by this gateway's clock); returns the wall time it was handed to the producer."""
        ts = datetime.now(UTC) + self.skew
        value = Reading(schema_version=1, station_id=self.station, ts=ts, seq=self.seq,
                        metrics={"pm2_5": round(pm25 * (1 + self.noise.uniform(-0.03, 0.03)), 2),
                                 "temperature": round(14 + self.noise.uniform(-0.3, 0.3), 2),
                                 "humidity": round(60 + self.noise.uniform(-2, 2), 1)}).to_json()
        self.producer.produce(self.topic, key=self.station.encode(), value=value,
                              timestamp=int(ts.timestamp() * 1000),
                              on_delivery=lambda err, _msg: err is None or self.errors.append(str(err)))
        self.producer.poll(0)
        self.seq += 1
        return time.time()


class Feed:
    """Every gateway sends once a second; the hot station joins when ``hot`` is set, with hazardous PM2.5."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.gateways = [Gateway(bootstrap, topic, s, skew) for s, skew in SKEW.items()]
        self.hot_gateway = Gateway(bootstrap, topic, HOT, timedelta(0))
        self.hot = threading.Event()
        self.first_hot: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for gateway in self.gateways:
                gateway.send(6.0)
            if self.hot.is_set():
                sent = self.hot_gateway.send(500.0)
                self.first_hot = self.first_hot or sent
            self._stop.wait(1.0)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for gateway in (*self.gateways, self.hot_gateway):
            gateway.producer.flush(10)


class AlertWatch:
    """Follows the alerts topic from its start, noting when each event was first seen."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r9-{uuid.uuid4().hex[:8]}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.seen: list[tuple[float, dict]] = []

    def poll(self, seconds: float) -> None:
        import json

        for msg in self.consumer.consume(100, timeout=seconds):
            if msg.error() is None:
                self.seen.append((time.time(), json.loads(msg.value())))

    def first(self, station: str, rule_id: str, state: str = "open") -> tuple[float, dict] | None:
        return next(((at, e) for at, e in self.seen
                     if e["station_id"] == station and e["rule_id"] == rule_id and e["state"] == state), None)


def start_scorer(bootstrap: str, topics: dict[str, str], data: Path) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")},
           "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_DATA_DIR": str(data),
           "CITYSENSE_READINGS_TOPIC": topics["readings_topic"], "CITYSENSE_ALERTS_TOPIC": topics["alerts_topic"],
           "CITYSENSE_DLQ_TOPIC": topics["dlq_topic"], "CITYSENSE_SCORER_METRICS_PORT": "0",
           "CITYSENSE_SCORER_TRIGGER_MS": "300"}
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                            stdout=open(data / "scorer.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


@pytest.mark.timeout(600)
def test_gateways_with_wrong_clocks_get_clock_faults_and_silence_no_one(kafka_broker, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    tag = uuid.uuid4().hex[:8]
    topics = {"readings_topic": f"r9.{tag}.readings", "alerts_topic": f"r9.{tag}.alerts",
              "dlq_topic": f"r9.{tag}.dlq"}
    ensure_topics(bootstrap, default_topics(CommonSettings(kafka_bootstrap=bootstrap, **topics),
                                            readings_partitions=3))
    scorer = start_scorer(bootstrap, topics, tmp_path / "data")
    log = tmp_path / "data" / "scorer.log"
    feed = Feed(bootstrap, topics["readings_topic"])
    watch = AlertWatch(bootstrap, topics["alerts_topic"])
    try:
        feed.start()
        # the scorer is live once the calm station's readings come back as rows; the skewed gateways send meanwhile
        deadline = time.monotonic() + 240
        while not (tmp_path / "data" / "citysense.db").exists() or not calm_rows(tmp_path / "data"):
            assert scorer.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the scorer stored nothing within 240 s"
            time.sleep(0.5)
        time.sleep(SKEWED_FOR_S)
        feed.hot.set()
        deadline = time.monotonic() + 90
        while watch.first(HOT, "pm25-acute-1m") is None or any(
                watch.first(s, "fault-clock") is None for s in ("r9-day", "r9-hour")):
            assert scorer.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, f"missing alerts; seen: {[(e['station_id'], e['rule_id'], e['state']) for _, e in watch.seen]}"  # noqa: E501
            watch.poll(0.2)
    finally:
        feed.stop()
        os.killpg(scorer.pid, signal.SIGTERM)
        try:
            scorer.wait(60)
        finally:
            if scorer.poll() is None:
                os.killpg(scorer.pid, signal.SIGKILL)
            watch.consumer.close()

    seen_at, opened = watch.first(HOT, "pm25-acute-1m")
    first_ts = datetime.fromisoformat(opened["opened_at"]).timestamp() * 1000
    hot_first_reading_ms = feed.first_hot * 1000
    latency_s = seen_at - feed.first_hot
    print(f"R9: {HOT} alert {opened['severity']} on the topic {latency_s:.2f} s after its first hazardous reading "
          f"was sent (event time {first_ts - hot_first_reading_ms:.0f} ms after it)")
    assert opened["severity"] == "critical"
    assert first_ts - hot_first_reading_ms <= EVENT_BOUND_MS + 1000  # ts of the first reading: ~ when it was sent
    assert latency_s <= ALERT_WITHIN_S

    for station in ("r9-day", "r9-hour"):
        _, fault = watch.first(station, "fault-clock")
        assert fault["kind"] == "sensor_fault" and fault["severity"] == "warning", fault
        assert abs(datetime.fromisoformat(fault["opened_at"]) - datetime.now(UTC)) < timedelta(minutes=10), \
            "opened at the broker's clock, not the gateway's"
    assert {e["station_id"] for _, e in watch.seen if e["rule_id"] == "fault-clock"} == {"r9-day", "r9-hour"}
    assert all(g.errors == [] for g in (*feed.gateways, feed.hot_gateway)), "the broker refused a gateway's readings"
    letters = read_topic(bootstrap, topics["dlq_topic"])
    assert letters and {d["reason"] for d in letters} == {"future_timestamp"}


def calm_rows(data: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(data / "citysense.db", timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM readings WHERE station_id = 'r9-calm'").fetchone()[0]
    except sqlite3.Error:
        return 0
