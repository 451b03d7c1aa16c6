"""R1: SIGKILL the scorer mid-stream (twice), restart it: stored rows and alert events exactly as an uninterrupted run.

tests/scorer/job/test_stream_e2e.py already kills the scorer once and checks the row count, the dead letters, that no
event id repeats and the counts of one rule's events. This test makes the comparison exact: the same input (every
message produced before the scorer starts, so micro-batch boundaries depend only on offsets and the per-trigger
cap, which the checkpoint keeps across restarts) goes through
- a reference scorer that runs undisturbed, and
- a scorer whose whole process group (JVM included) is SIGKILLed twice mid-stream and restarted;
then the stored readings (station, ts, seq, metrics, z-scores), the station rows and the alert events on the topic
(event ids — content hashes — and full payloads) must be identical; an event may be on the topic twice only as an
identical copy (the real-time path's Kafka sink is at-least-once). It runs on both stores:
SQLite, and Cassandra on a real node (each run in a keyspace of its own).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.testing.topics import distinct_events, read_topic
from confluent_kafka import Producer

pytestmark = pytest.mark.slow

START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=4)
CAP = 50  # messages per micro-batch (9 batches for the workload)


def reading(station: str, seq: int, pm25: float) -> bytes:
    # Every metric varies a little, as real sensors do: with station health on, 30 equal values are a frozen sensor.
    noise = random.Random(f"{station}:{seq}")
    pm25 = round(pm25 * (1 + noise.uniform(-0.04, 0.04)), 2)
    return Reading(schema_version=1, station_id=station, ts=START + timedelta(seconds=seq), seq=seq,
                   metrics={"pm2_5": pm25, "pm10": round(pm25 + 5 + noise.uniform(0, 1), 2),
                            "temperature": round(12.0 + seq * 0.005 + noise.gauss(0, 0.05), 2),
                            "humidity": round(70.0 - seq * 0.01 + noise.gauss(0, 0.3), 1)}).to_json()


def workload() -> list[tuple[str, bytes]]:
    """Three stations, 150 s at 1 Hz: two pollution episodes (open, escalate, resolve) and a calm station."""
    out = []
    for seq in range(150):
        out.append(("hot-a", reading("hot-a", seq, 500.0 if 10 <= seq < 40 else 6.0)))
        out.append(("hot-b", reading("hot-b", seq, 140.0 if 30 <= seq < 50 else (300.0 if 50 <= seq < 70 else 4.0))))
        out.append(("calm", reading("calm", seq, 8.0 + seq % 3)))
    return out


def topics_for(tag: str) -> dict[str, str]:
    return {"readings_topic": f"r1.{tag}.readings", "alerts_topic": f"r1.{tag}.alerts", "dlq_topic": f"r1.{tag}.dlq"}


class SQLiteRows:
    """The stored rows of one run's SQLite store."""

    def __init__(self, data: Path) -> None:
        self.db = data / "citysense.db"
        self.env: dict[str, str] = {"CITYSENSE_SQLITE_PATH": str(self.db)}

    def readings(self) -> list[tuple]:
        return rows(self.db)

    def stations(self) -> list[tuple]:
        return stations(self.db)


class CassandraRows:
    """The stored rows of one run's Cassandra keyspace, in the same shape for comparison."""

    def __init__(self, node, keyspace: str) -> None:  # noqa: ANN001 - CassandraNode or None (external cluster)
        from cassandra.cluster import Cluster

        self.keyspace = keyspace
        self.env = {**(node.env if node is not None else {}), "CITYSENSE_STORE": "cassandra",
                    "CITYSENSE_CASSANDRA_KEYSPACE": keyspace}
        hosts = self.env.get("CITYSENSE_CASSANDRA_HOSTS") or os.environ["CITYSENSE_CASSANDRA_HOSTS"]
        port = int(self.env.get("CITYSENSE_CASSANDRA_PORT") or os.environ.get("CITYSENSE_CASSANDRA_PORT", "9042"))
        self.cluster = Cluster(hosts.split(","), port=port)
        self.session = self.cluster.connect()

    def _all(self, cql: str) -> list:
        try:
            return list(self.session.execute(cql.format(ks=self.keyspace)))
        except Exception:  # noqa: BLE001 - keyspace or table not created yet by the scorer
            return []

    def readings(self) -> list[tuple]:
        cql = "SELECT station_id, ts, seq, metrics, zscores, outliers, late FROM {ks}.readings"
        return sorted((r.station_id, r.ts, r.seq, sorted((r.metrics or {}).items()), sorted((r.zscores or {}).items()),
                       list(r.outliers or []), r.late) for r in self._all(cql))

    def stations(self) -> list[tuple]:
        return sorted((r.station_id, r.last_seen, r.last_seq, sorted((r.latest or {}).items()), r.lat, r.lon, r.status)
                      for r in self._all("SELECT * FROM {ks}.stations"))

    def close(self) -> None:
        self.session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}")
        self.cluster.shutdown()


def start(bootstrap: str, topics: dict[str, str], data: Path, store_env: dict[str, str]) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}, **store_env,
           "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_DATA_DIR": str(data),
           "CITYSENSE_READINGS_TOPIC": topics["readings_topic"],
           "CITYSENSE_ALERTS_TOPIC": topics["alerts_topic"], "CITYSENSE_DLQ_TOPIC": topics["dlq_topic"],
           "CITYSENSE_SCORER_METRICS_PORT": "0", "CITYSENSE_SCORER_TRIGGER_MS": "200",
           "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": str(CAP), "CITYSENSE_SCORER_SNAPSHOT_EVERY": "4"}
    data.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                            stdout=open(data / "scorer.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                            start_new_session=True)


def rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT station_id, ts, seq, metric_names, metric_values, zscores, outliers, late "
                                "FROM readings ORDER BY station_id, ts, seq").fetchall()
    except sqlite3.Error:
        return []


def stations(db: Path) -> list[tuple]:
    with sqlite3.connect(db, timeout=5) as conn:
        cols = [c[1] for c in conn.execute("PRAGMA table_info(stations)")]
        keep = [c for c in cols if c not in ("status_ts", "status_changed_at")]  # processing-time stamps
        return conn.execute(f"SELECT {', '.join(keep)} FROM stations ORDER BY station_id").fetchall()  # noqa: S608


def events(bootstrap: str, topic: str) -> list[dict]:
    return sorted(read_topic(bootstrap, topic), key=lambda e: e["event_id"])


class Scorer:
    """One scorer run; a scorer that exits by itself is restarted like the stack's supervisor would (bounded)."""

    MAX_OWN_EXITS = 3

    def __init__(self, bootstrap: str, topics: dict[str, str], data: Path, store: SQLiteRows | CassandraRows) -> None:
        self.args = (bootstrap, topics, data, store.env)
        self.store = store
        self.log = data / "scorer.log"
        self.own_exits: list[int] = []
        self.proc = start(*self.args)

    def restart(self) -> None:
        self.proc = start(*self.args)

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def wait_rows(self, count: int, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while len(self.store.readings()) < count:
            if self.proc.poll() is not None:
                # e.g. "Python worker failed to connect back" on a starved machine; a crash is one more
                # interruption the exactness check has to survive, but a scorer that keeps dying fails the test.
                self.own_exits.append(self.proc.returncode)
                log = self.log.read_text(errors="replace")[-3000:]
                assert len(self.own_exits) <= self.MAX_OWN_EXITS, f"scorer keeps exiting {self.own_exits}:\n{log}"
                self.restart()
            assert time.monotonic() < deadline, f"{len(self.store.readings())} of {count} rows after {timeout}s"
            time.sleep(0.3)


def finish(proc: subprocess.Popen) -> None:
    time.sleep(2)  # the batch that stored the last rows produced its events before it returned
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(params=["sqlite", "cassandra"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, SQLiteRows | CassandraRows]]:
    """The reference run's store and the killed run's store, of the same backend."""
    if request.param == "sqlite":
        yield {name: SQLiteRows(tmp_path / name) for name in ("reference", "killed")}
        return
    node = request.getfixturevalue("cassandra_node")
    made = {name: CassandraRows(node, f"r1_{name}_{uuid.uuid4().hex[:8]}") for name in ("reference", "killed")}
    try:
        yield made
    finally:
        for store in made.values():
            store.close()


@pytest.mark.timeout(2400)  # four scorer starts (JVM each); the suite default is 300 s
def test_sigkilled_scorer_matches_an_undisturbed_run_exactly(kafka_broker, stores, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    messages = workload()
    total = len(messages)
    runs = {}
    for name in ("reference", "killed"):
        topics = topics_for(f"{name}-{uuid.uuid4().hex[:6]}")
        ensure_topics(bootstrap, [TopicSpec(t, 3) for t in topics.values()])
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
        for key, value in messages:
            producer.produce(topics["readings_topic"], key=key, value=value)
        assert producer.flush(30) == 0
        runs[name] = (topics, tmp_path / name)

    ref_topics, ref_dir = runs["reference"]
    ref = Scorer(bootstrap, ref_topics, ref_dir, stores["reference"])
    try:
        ref.wait_rows(total)
        finish(ref.proc)
    finally:
        if ref.proc.poll() is None:
            os.killpg(ref.proc.pid, signal.SIGKILL)

    topics, data = runs["killed"]
    killed = Scorer(bootstrap, topics, data, stores["killed"])
    try:
        for kill_at in (total // 4, total // 2):  # two SIGKILLs of the whole group, JVM included, mid-stream
            killed.wait_rows(kill_at)
            killed.kill()
            assert len(stores["killed"].readings()) < total, "the kill came too late to be mid-stream"
            killed.restart()
        killed.wait_rows(total)
        finish(killed.proc)
    finally:
        if killed.proc.poll() is None:
            os.killpg(killed.proc.pid, signal.SIGKILL)

    ref_rows, got_rows = stores["reference"].readings(), stores["killed"].readings()
    assert len(ref_rows) == total
    assert got_rows == ref_rows
    assert stores["killed"].stations() == stores["reference"].stations()
    ref_events = events(bootstrap, ref_topics["alerts_topic"])
    # The real-time path writes at least once: a replay after a kill may repeat an event, only ever identically
    # (distinct_events asserts that); consumers key on event_id.
    got_events = distinct_events(events(bootstrap, topics["alerts_topic"]))
    assert len(ref_events) == len(distinct_events(ref_events)), "an undisturbed run wrote an event twice"
    assert {e["rule_id"] for e in ref_events} >= {"pm25-acute-1m"}  # the workload does open alerts
    assert [e["event_id"] for e in got_events] == [e["event_id"] for e in ref_events]
    assert got_events == ref_events
    assert events(bootstrap, topics["dlq_topic"]) == []
