"""The real ``citysense-scorer stream`` with station health on: a frozen sensor and a silent station, end to end."""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.store.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stream_e2e import produce, read_all, scorer_env, start_scorer  # noqa: E402

pytestmark = pytest.mark.slow
START = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=2)


def alerts_until(bootstrap: str, topic: str, predicate, timeout: float) -> list[dict]:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        alerts = read_all(bootstrap, topic, expect=0, timeout=10)
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
    env = {**scorer_env(tmp_path, bootstrap, unique_topics), "CITYSENSE_HEALTH_ENABLED": "true",
           "CITYSENSE_OFFLINE_AFTER_S": "20", "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "0"}
    log = tmp_path / "scorer.log"
    proc = start_scorer(env, log)
    try:
        alerts = alerts_until(bootstrap, unique_topics["alerts_topic"], offline("open"), timeout=600)
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
