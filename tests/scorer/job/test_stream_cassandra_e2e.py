"""End to end on Cassandra: simulator -> Kafka -> `citysense-scorer stream` (+ the notifier, which records the
real-time path's alerts) -> a real Cassandra node -> alert API.

The simulator runs three live stations, one of them in a PM2.5 pollution episode. Every reading on the topic must
land in Cassandra exactly once, and the API (opening its own Cassandra store from settings, as in production) must
serve the stations, every reading through its cursor pages, and the pollution alert.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_alert_api.app import create_app
from citysense_alert_api.settings import build_settings
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.store import StoreSettings
from citysense_common.store.cassandra import CassandraStore
from citysense_common.testing.topics import read_topic
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow

TOKEN = "test-token-" + "x" * 24
STATIONS = 3


def stored_readings(store: CassandraStore) -> int:
    try:
        return store._session.execute(f"SELECT count(*) FROM {store.keyspace}.readings").one()[0]  # noqa: S608
    except Exception:  # noqa: BLE001 - the keyspace appears when the scorer has migrated it
        return 0


def store_ready(store: CassandraStore) -> bool:
    """Whether the scorer has created and migrated the keyspace (the notifier needs its tables)."""
    try:
        store._session.execute(f"SELECT alert_id FROM {store.keyspace}.alerts_by_id LIMIT 1")  # noqa: S608
    except Exception:  # noqa: BLE001 - not there yet
        return False
    return True


def recorded_rules(store: CassandraStore) -> set[str]:
    try:
        return {row[0] for row in store._session.execute(f"SELECT rule_id FROM {store.keyspace}.alerts_by_id")}  # noqa: S608
    except Exception:  # noqa: BLE001 - not there yet
        return set()


def test_simulator_scorer_cassandra_api(kafka_broker, cassandra_node, unique_topics, tmp_path: Path) -> None:  # noqa: ANN001
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, [TopicSpec(unique_topics[t], 2) for t in ("readings_topic", "alerts_topic", "dlq_topic")])
    keyspace = f"citysense_e2e_{uuid.uuid4().hex[:10]}"
    where = cassandra_node.env if cassandra_node is not None else {}
    env = {
        **os.environ, **where,
        "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap,
        "CITYSENSE_DATA_DIR": str(tmp_path / "data"),
        "CITYSENSE_STORE": "cassandra",
        "CITYSENSE_CASSANDRA_KEYSPACE": keyspace,
        "CITYSENSE_READINGS_TOPIC": unique_topics["readings_topic"],
        "CITYSENSE_ALERTS_TOPIC": unique_topics["alerts_topic"],
        "CITYSENSE_DLQ_TOPIC": unique_topics["dlq_topic"],
        "CITYSENSE_SCORER_METRICS_PORT": "0",
        "CITYSENSE_SCORER_TRIGGER_MS": "500",
    }
    node = {"cassandra_hosts": [cassandra_node.contact_points], "cassandra_port": cassandra_node.port} \
        if cassandra_node is not None else {}
    settings = StoreSettings(store="cassandra", cassandra_keyspace=keyspace, **node)
    started = datetime.now(UTC) - timedelta(seconds=5)
    simulator = subprocess.run(
        [sys.executable, "-m", "citysense_simulator.cli", "run", "--stations", str(STATIONS), "--rate-hz", "2",
         "--duration", "25", "--seed", "7", "--instance-id", "e2e",
         "--scenario", "pollution:stations=1,start=0,ramp=2,peak=500"],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert simulator.returncode == 0, simulator.stderr[-3000:]
    produced = read_topic(bootstrap, unique_topics["readings_topic"])
    per_station = Counter(r["station_id"] for r in produced)
    assert len(per_station) == STATIONS and len(produced) >= STATIONS * 40

    store = CassandraStore(settings)  # connects only: the scorer creates the keyspace when it starts
    log = tmp_path / "scorer.log"
    scorer = subprocess.Popen([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=env,
                              stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
    # The notifier records the real-time path's alert events in the store (that path writes only to Kafka).
    notifier_env = {**env, "CITYSENSE_NOTIFIER_METRICS_PORT": "0",
                    "CITYSENSE_WEBHOOK_TESTS_TOPIC": f"{unique_topics['alerts_topic']}.webhook-tests",
                    "CITYSENSE_WEBHOOK_RETRIES_TOPIC": f"{unique_topics['alerts_topic']}.webhook-retries"}
    notifier = None
    try:
        deadline = time.monotonic() + 240
        while stored_readings(store) < len(produced):
            if notifier is None and store_ready(store):
                notifier = subprocess.Popen([sys.executable, "-m", "citysense_notifier.cli"], env=notifier_env,
                                            stdout=open(tmp_path / "notifier.log", "ab"),  # noqa: SIM115
                                            stderr=subprocess.STDOUT, start_new_session=True)
            if scorer.poll() is not None:
                pytest.fail(f"scorer exited with {scorer.returncode}:\n{log.read_text()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{stored_readings(store)} of {len(produced)} readings stored; "
                            f"scorer log:\n{log.read_text()[-4000:]}")
            time.sleep(1)
        time.sleep(3)  # the batch that stored the last readings also upserts stations and alerts
        assert notifier is not None, "the scorer never created the keyspace"
        while "pm25-acute-1m" not in recorded_rules(store):
            if time.monotonic() > deadline:
                on_topic = read_topic(bootstrap, unique_topics["alerts_topic"])
                pytest.fail(f"no pm25-acute-1m alert recorded; alert events on the topic: "
                            f"{[(e['rule_id'], e['state']) for e in on_topic]}; notifier log:\n"
                            f"{(tmp_path / 'notifier.log').read_text()[-2000:]}")
            time.sleep(1)  # the notifier records the real-time path's alerts
    finally:
        for proc in (scorer, notifier):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    try:
        assert stored_readings(store) == len(produced)  # exactly once, nothing lost, nothing doubled

        api_settings = build_settings(data_dir=tmp_path / "api", kafka_bootstrap=bootstrap, **unique_topics,
                                      **settings.model_dump(include={"store", "cassandra_hosts", "cassandra_port",
                                                                     "cassandra_keyspace"}))
        with TestClient(create_app(api_settings, TOKEN)) as api:  # the API opens its own Cassandra store
            stations = {s["id"]: s for s in api.get("/v1/stations").raise_for_status().json()["items"]}
            assert set(stations) == set(per_station)
            for station_id, count in per_station.items():
                newest = max(r["seq"] for r in produced if r["station_id"] == station_id)
                assert stations[station_id]["last_seq"] == newest
                seen, cursor = [], None
                window = {"from": started.isoformat(), "to": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
                          "limit": 17}
                for _ in range(100):
                    params = {**window, **({"cursor": cursor} if cursor else {})}
                    page = api.get(f"/v1/stations/{station_id}/readings", params=params).raise_for_status().json()
                    seen += [r["seq"] for r in page["items"]]
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
                assert sorted(seen) == sorted(r["seq"] for r in produced if r["station_id"] == station_id)
                assert len(seen) == count == len(set(seen))

            alerts = api.get("/v1/alerts", params={"state": "all", "limit": 1000}).raise_for_status().json()["items"]
            pm25 = [a for a in alerts if a["rule_id"] == "pm25-acute-1m"]
            polluted = sorted(stations)[0]  # ids end in the station's index: the scenario's stations=1 is the first
            assert {a["station_id"] for a in pm25} == {polluted}, alerts
            assert pm25[0]["severity"] == "critical"
            one = api.get(f"/v1/alerts/{pm25[0]['id']}").raise_for_status().json()
            assert one["station_id"] == pm25[0]["station_id"]
    finally:
        store.drop_keyspace()
        store.close()

