"""The real ``citysense-scorer stream`` with its default settings (station health on): a frozen sensor and a silent
station end to end, then the real ``citysense-scorer batch`` over what the stream stored, served by the alert API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.store.sqlite import SQLiteStore
from citysense_common.testing.topics import read_topic

from tests.scorer.job.test_stream_e2e import produce, scorer_env, start_scorer

pytestmark = pytest.mark.slow
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)


def alerts_until(bootstrap: str, topic: str, predicate, timeout: float) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        alerts = read_topic(bootstrap, topic, timeout=10)
        if predicate(alerts) or time.monotonic() > deadline:
            return alerts
        time.sleep(2)


def offline(state: str):  # noqa: ANN201
    return lambda alerts: any(a["station_id"] == "quiet-1" and a["kind"] == "station_offline" and a["state"] == state
                              for a in alerts)


def reading(station: str, seq: int, temperature: float, pm25: float, ts: datetime) -> bytes:
    return Reading(schema_version=1, station_id=station, ts=ts, seq=seq,
                   metrics={"temperature": temperature, "pm2_5": pm25, "humidity": 60.0 + seq % 5}).to_json()


@pytest.mark.timeout(900)
def test_frozen_sensor_and_silent_station(kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, [TopicSpec(unique_topics[t], 1) for t in ("readings_topic", "alerts_topic", "dlq_topic")])
    frozen = [("frozen-1", reading("frozen-1", i, 41.0, 8.0 + i % 4, START + timedelta(seconds=i))) for i in range(45)]
    quiet = [("quiet-1", reading("quiet-1", i, 12.0 + (i % 3) * 0.1, 9.0 + i % 3, START + timedelta(seconds=i)))
             for i in range(5)]
    produce(bootstrap, unique_topics["readings_topic"], frozen + quiet)
    env = {**scorer_env(tmp_path, bootstrap, unique_topics),
           "CITYSENSE_OFFLINE_AFTER_S": "20", "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "0"}
    env["CITYSENSE_HEALTH_ENABLED"] = "true"
    log = tmp_path / "scorer.log"
    proc = start_scorer(env, log)
    try:
        alerts = alerts_until(bootstrap, unique_topics["alerts_topic"], offline("open"), timeout=600)
        faults = [a for a in alerts if a["kind"] == "sensor_fault"]
        assert [(a["station_id"], a["rule_id"], a["state"]) for a in faults] == [
            ("frozen-1", "fault-flatline.temperature", "open")], faults  # exactly one, and nothing else is faulty
        kinds = {(a["station_id"], a["kind"], a["rule_id"], a["state"]) for a in alerts}
        assert ("frozen-1", "sensor_fault", "fault-flatline.temperature", "open") in kinds, log.read_text()[-3000:]
        assert ("quiet-1", "station_offline", "station-offline", "open") in kinds, log.read_text()[-3000:]
        # the frozen temperature (41 °C, heat index territory) raises no threshold alert from that metric
        assert not [a for a in alerts if a["kind"] == "threshold" and a["metric"] in ("temperature", "heat_index")]
        store = SQLiteStore(tmp_path / "data" / "citysense.db")
        try:
            assert store.get_station("quiet-1").status == "offline"
        finally:
            store.close()
        produce(bootstrap, unique_topics["readings_topic"],
                [("quiet-1", reading("quiet-1", 100, 12.5, 9.0, datetime.now(UTC).replace(microsecond=0)))])
        alerts = alerts_until(bootstrap, unique_topics["alerts_topic"], offline("resolved"), timeout=300)
        assert offline("resolved")(alerts), log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(60)
            except Exception:  # noqa: BLE001
                os.killpg(proc.pid, signal.SIGKILL)
    # The checkpoint it leaves holds the health operator's state: a scorer with health off refuses it before Spark
    # starts, naming the fix.
    off = subprocess.run([sys.executable, "-m", "citysense_scorer.cli", "stream"], capture_output=True, text=True,
                         env={**env, "CITYSENSE_HEALTH_ENABLED": "false"}, timeout=120)
    assert off.returncode == 2 and "written with station health on" in off.stdout + off.stderr, off.stderr[-3000:]
    batch_served_by_the_api(env, tmp_path, bootstrap, unique_topics)


def batch_served_by_the_api(env: dict[str, str], tmp_path: Path, bootstrap: str, topics: dict[str, str]) -> None:
    """The daily batch job over the stream's store; the API serves its rows, without the frozen values."""
    from citysense_alert_api.app import create_app
    from citysense_alert_api.settings import build_settings
    from citysense_common.store.factory import open_store
    from fastapi.testclient import TestClient

    day = START.strftime("%Y-%m-%d")
    done = subprocess.run([sys.executable, "-m", "citysense_scorer.cli", "batch", "--day", day], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1])["aggregates"] > 0
    # frozen-1 readings 0..44; the 30th equal temperature (index 29) and later ones are sensor faults
    on_day = [i for i in range(45) if (START + timedelta(seconds=i)).strftime("%Y-%m-%d") == day]
    settings = build_settings(data_dir=tmp_path / "data", sqlite_path=tmp_path / "data" / "citysense.db",
                              kafka_bootstrap=bootstrap, **topics)
    store = open_store(settings)
    try:
        with TestClient(create_app(settings, "t" * 32, store=store)) as client:
            r = client.get("/v1/stations/frozen-1/aggregates", params={"from": day, "to": day})
            assert r.status_code == 200, r.text
            items = {i["metric"]: i for i in r.json()["items"]}
            assert items["humidity"]["count"] == len(on_day)
            assert items["temperature"]["count"] == len([i for i in on_day if i < 29])
            assert items["temperature"]["max"] == 41.0 and not items["temperature"]["complete"]
            assert client.get("/v1/stations/quiet-1").json()["status"] == "active"
    finally:
        store.close()
