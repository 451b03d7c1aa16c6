"""R13: the SQLite store's disk fills while a real scorer (Spark JVM) writes readings and a real API serves them.

The store lives alone on a 24 MiB tmpfs (mounted for the test: root only); checkpoints, logs and Kafka stay on the
ordinary disk, so only the store's filesystem is full. A file fills it to the last byte while readings keep
arriving. Then:
- no crash loop: the scorer process stays up (an exiting scorer is restarted by the stack into the same full disk,
  and given up on after five tries), holding its micro-batch and retrying;
- a clear error in its log: the store is full, where, how many bytes are free, that it retries;
- readiness down: the API's /readyz answers 503 with the store check failing, and the scorer's metrics show the
  store filesystem's free bytes (the gauge the chart's CitysenseStoreDiskFull alert reads) near zero;
- recovery when space returns: the filler is deleted, /readyz is 200 again and every reading that arrived during
  the outage is stored, once, by the same scorer process.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.testing.disk import NeedsRoot, fill, small_tmpfs
from citysense_localstack.servers.net import free_port
from confluent_kafka import Producer

pytestmark = pytest.mark.slow

MIN_FREE = 2 * 1024 * 1024  # CITYSENSE_SQLITE_MIN_FREE_BYTES: readiness floor
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
BEFORE, DURING = 60, 1500  # readings stored before the disk fills, readings that arrive while it is full


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    try:
        with small_tmpfs(tmp_path / "store", "24m") as mount:
            yield mount
    except NeedsRoot as exc:
        pytest.skip(f"R13 runs the store on a 24 MiB tmpfs: {exc}")


def produce(bootstrap: str, topic: str, first: int, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(first, first + n):
        station = f"disk-{i % 5}"
        seq = i // 5
        reading = Reading(schema_version=1, station_id=station, ts=START + timedelta(seconds=seq), seq=seq,
                          metrics={"pm2_5": 8.0 + (i * 7919 % 13) / 10, "pm10": 15.0 + (i * 104729 % 17) / 10,
                                   "temperature": 11.0 + (i % 29) / 10, "humidity": 60.0 + (i % 31) / 10})
        producer.produce(topic, key=station, value=reading.to_json())
        producer.poll(0)
    assert producer.flush(30) == 0


def stored(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.Error:
        return -1


def wait_for(what: str, predicate, timeout: float, procs: dict[str, subprocess.Popen]) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        for name, proc in procs.items():
            assert proc.poll() is None, f"the {name} exited with code {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.5)


def ready(base: str) -> tuple[int, dict]:
    response = httpx.get(f"{base}/readyz", timeout=5)
    return response.status_code, response.json()


def free_gauge(metrics: str, db: Path) -> float | None:
    try:
        text = httpx.get(metrics, timeout=5).text
    except httpx.TransportError:
        return None
    match = re.search(r'^citysense_store_filesystem_free_bytes\{path="' + re.escape(str(db)) + r'"\} (\S+)$', text,
                      re.MULTILINE)
    return float(match.group(1)) if match else None


def test_r13_store_disk_full(kafka_broker, small_fs: Path, tmp_path: Path) -> None:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    topics = {"CITYSENSE_READINGS_TOPIC": f"r13.{tag}.readings", "CITYSENSE_ALERTS_TOPIC": f"r13.{tag}.alerts",
              "CITYSENSE_DLQ_TOPIC": f"r13.{tag}.dlq"}
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(topics["CITYSENSE_READINGS_TOPIC"], 2)])
    db = small_fs / "citysense.db"
    data = tmp_path / "data"
    data.mkdir()
    api_port, metrics_port = free_port(), free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}, **topics,
           "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "CITYSENSE_DATA_DIR": str(data),
           "CITYSENSE_SQLITE_PATH": str(db), "CITYSENSE_SQLITE_MIN_FREE_BYTES": str(MIN_FREE),
           "CITYSENSE_API_PORT": str(api_port), "CITYSENSE_API_WORKERS": "1",
           "CITYSENSE_SCORER_METRICS_PORT": str(metrics_port), "CITYSENSE_SCORER_TRIGGER_MS": "500",
           "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "500"}
    base, metrics = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{metrics_port}/metrics"
    scorer_log, api_log = data / "scorer.log", data / "api.log"
    procs: dict[str, subprocess.Popen] = {}
    try:
        with api_log.open("wb") as out:
            procs["API"] = subprocess.Popen([str(Path(sys.executable).parent / "citysense-alert-api")], env=env,
                                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

        def api_ready() -> bool:
            try:
                return ready(base)[0] == 200
            except httpx.TransportError:
                return False

        wait_for("the API's readiness", api_ready, 60, procs)
        produce(kafka_broker.bootstrap, topics["CITYSENSE_READINGS_TOPIC"], 0, BEFORE)
        with scorer_log.open("wb") as out:
            procs["scorer"] = subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(f"{BEFORE} readings stored", lambda: stored(db) == BEFORE, 180, procs)

        filler = fill(small_fs)
        produce(kafka_broker.bootstrap, topics["CITYSENSE_READINGS_TOPIC"], BEFORE, DURING)
        full_at = time.monotonic()

        def disk_full_logged() -> bool:
            return "database or disk is full" in scorer_log.read_text(errors="replace")

        wait_for("the scorer to log the full disk", disk_full_logged, 120, procs)
        time.sleep(5)
        assert procs["scorer"].poll() is None, f"the scorer exited with code {procs['scorer'].returncode}"
        status, body = ready(base)
        assert status == 503 and body["checks"]["store"] != "ok", body
        gauge = free_gauge(metrics, db)
        assert gauge is not None and gauge < MIN_FREE, gauge
        # No crash loop: the same scorer process holds the batch and keeps retrying for a while.
        time.sleep(max(0.0, 30 - (time.monotonic() - full_at)))
        assert procs["scorer"].poll() is None, f"the scorer exited with code {procs['scorer'].returncode}"
        text = scorer_log.read_text(errors="replace")
        lines = [line for line in text.splitlines() if "database or disk is full" in line]
        assert len(lines) >= 2, lines  # retried, not given up
        assert re.search(r"store is full.*citysense\.db: \d+ bytes free.*retrying in \d+ s", lines[0]), lines[0]
        assert stored(db) < BEFORE + DURING
        assert ready(base)[0] == 503

        filler.unlink()
        freed_at = time.monotonic()
        wait_for("readiness back", lambda: ready(base)[0] == 200, 30, procs)
        wait_for("every reading stored", lambda: stored(db) == BEFORE + DURING, 120, procs)
        recovered_s = time.monotonic() - freed_at
        assert "store writes again" in scorer_log.read_text(errors="replace")
        gauge = free_gauge(metrics, db)
        assert gauge is not None and gauge > MIN_FREE
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            assert conn.execute("SELECT count(DISTINCT station_id || ':' || seq) FROM readings").fetchone()[0] == \
                BEFORE + DURING
        print(f"R13: all {BEFORE + DURING} readings stored {recovered_s:.1f} s after space returned")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
