"""The live source end to end: fixture API over real HTTP -> real broker -> contract readings read back.

Covers discovery, mapping into readings (one per box and instant, with the measurement's own time), dedup across
polls and across restarts (state on disk), unmapped phenomena reported once, and the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_simulator.opensensemap import OpenSenseMapSource
from citysense_simulator.opensensemap_client import OpenSenseMapClient
from citysense_simulator.opensensemap_mapping import load_mapper
from citysense_simulator.opensensemap_state import SentState
from citysense_simulator.runner import KafkaPublisher
from citysense_simulator.settings import load

from .kafka_readback import consume, readings
from .osem_fake import FakeOpenSenseMap

A, B, C, D = "5f1e8c1b9fe0b6001b3e0a01", "5f1e8c1b9fe0b6001b3e0b02", "60a1b2c3d4e5f60718293a4c", \
    "61b2c3d4e5f60718293a4c5d"
BBOX = "13.0884,52.3383,13.7612,52.6755"
NOW = datetime(2024, 5, 6, 10, 3, tzinfo=UTC).timestamp()  # a few minutes after the fixtures' measurements
PARTITIONS = 3


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def api():
    with FakeOpenSenseMap() as fake:
        fake.serve_round(1)
        yield fake


@pytest.fixture
def settings(kafka_broker, unique_topics, tmp_path):
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], PARTITIONS)])
    return load(kafka_bootstrap=kafka_broker.bootstrap, data_dir=tmp_path, **unique_topics)


def make_source(api: FakeOpenSenseMap, settings, clock: float = NOW) -> OpenSenseMapSource:
    state = SentState(settings.data_dir / "opensensemap" / "state.json")  # a new instance = a restart
    return OpenSenseMapSource(OpenSenseMapClient(api.url, sleep=lambda _: None), load_mapper(settings.registry()),
                              state, KafkaPublisher(settings), bbox=BBOX, phenomena=["PM2.5", "Temperatur"],
                              poll_interval=0, clock=lambda: clock)


def test_discovery_unites_phenomena_and_reads_box_locations(api, settings) -> None:
    boxes = make_source(api, settings).discover()
    assert sorted(boxes) == sorted([A, B, C, D])  # A appears for both phenomena, once; the id-less box is dropped
    assert (boxes[A].location.lat, boxes[A].location.lon) == (52.4995, 13.4318)  # currentLocation [lon, lat]
    assert (boxes[B].location.lat, boxes[B].location.lon) == (52.4823, 13.4401)  # only loc[0].geometry
    discovery = [r for r in api.requests if r.startswith("/boxes?")]
    assert len(discovery) == 2
    assert all("bbox=13.0884%2C52.3383%2C13.7612%2C52.6755" in r and "full=true" in r for r in discovery)
    assert {"phenomenon=PM2.5", "phenomenon=Temperatur"} == {p for r in discovery for p in r.split("&")
                                                               if p.startswith("phenomenon=")}


def test_polls_publish_new_measurements_once_across_polls_and_restarts(api, settings, kafka_broker,
                                                                       unique_topics, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="citysense.simulator.opensensemap")
    topic = unique_topics["readings_topic"]

    # Round 1 and an unchanged round 2 in one process: 5 readings, then nothing new.
    source = make_source(api, settings)
    assert source.run(threading.Event(), rounds=2) == 5
    first = {(r.station_id, r.ts): r for r in readings(consume(kafka_broker.bootstrap, topic, PARTITIONS, 5))}
    assert len(first) == 5

    a_pm = first[(A, ts("2024-05-06T10:00:03.123Z"))]
    assert a_pm.metrics == {"pm10": 21.4, "pm2_5": 12.7}
    a_climate = first[(A, ts("2024-05-06T10:00:05.456Z"))]
    assert a_climate.metrics == {"temperature": 17.32, "humidity": 61.05, "pressure": 1013.25}  # Pa -> hPa
    assert (a_pm.location.lat, a_pm.location.lon) == (52.4995, 13.4318)
    assert sorted([a_pm.seq, a_climate.seq]) == [0, 1]
    b = first[(B, ts("2024-05-06T10:01:00Z"))]
    assert b.metrics == {"pm10": 35.1, "pm2_5": 28.9, "noise_level": 63.4, "illuminance": 5230.0}
    # C's temperature was last measured in 2023 (an offline sensor): not live data, not published.
    assert first[(C, ts("2024-05-06T09:59:30Z"))].metrics == {"pm2_5": 8.3}
    assert first[(D, ts("2024-05-06T10:02:00Z"))].metrics == {"temperature": 16.9, "pressure": 1008.4}

    # Unmapped phenomena: reported once although seen in both rounds and on two boxes.
    wifi = [r for r in caplog.records if "Wifi-Stärke" in r.getMessage()]
    uv = [r for r in caplog.records if "UV-Intensität" in r.getMessage()]
    assert len(wifi) == 1 and len(uv) == 1

    # Restart (new process state from disk) with box A measuring again: only the new measurement is sent.
    state = json.loads((settings.data_dir / "opensensemap" / "state.json").read_text())
    assert state["last_sent"][A[:-2] + "a1"] == "2024-05-06T10:00:03.123Z"
    api.serve_round(2)
    assert make_source(api, settings, clock=NOW + 300).run(threading.Event(), rounds=1) == 1
    # And another restart with nothing new publishes nothing.
    assert make_source(api, settings, clock=NOW + 600).run(threading.Event(), rounds=1) == 0

    everything = readings(consume(kafka_broker.bootstrap, topic, PARTITIONS, 6))
    assert len(everything) == 6  # 5 + 1, no duplicates
    newest = [r for r in everything if r.ts == ts("2024-05-06T10:05:03.200Z")]
    assert len(newest) == 1 and newest[0].station_id == A
    assert newest[0].metrics == {"pm10": 22.0, "pm2_5": 13.1}
    assert newest[0].seq == 2  # seq continues across the restart


def test_a_failing_box_is_skipped_for_the_round_and_others_still_publish(api, settings, kafka_broker,
                                                                         unique_topics) -> None:
    from .osem_fake import Answer
    api.standing[f"/boxes/{B}/sensors"] = Answer(503, b"busy")
    source = make_source(api, settings)
    source.client.max_attempts = 2
    assert source.run(threading.Event(), rounds=1) == 4  # all but B's one reading
    got = readings(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], PARTITIONS, 4))
    assert B not in {r.station_id for r in got}
    api.serve_round(1)  # B recovers: its reading comes in the next round, nothing else is repeated
    assert make_source(api, settings).run(threading.Event(), rounds=1) == 1


def test_cli_runs_rounds_against_the_api_and_keeps_state(api, kafka_broker, unique_topics, tmp_path) -> None:
    env = {**os.environ, "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "CITYSENSE_READINGS_TOPIC": unique_topics["readings_topic"], "CITYSENSE_DATA_DIR": str(tmp_path)}
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], PARTITIONS)])
    # The fixtures are from 2024; --max-age wide enough that they still count as current.
    cmd = [sys.executable, "-m", "citysense_simulator.cli", "opensensemap", "--api-url", api.url, "--bbox", BBOX,
           "--phenomenon", "PM2.5", "--rounds", "1", "--max-age", str(10 * 365 * 86400)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "discovered 3 senseBoxes" in proc.stderr
    assert Path(tmp_path, "opensensemap", "state.json").is_file()
    # C's 2023 temperature is within this --max-age, so C has 2 readings here: 2 (A) + 1 (B) + 2 (C) = 5.
    assert len(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], PARTITIONS, 5)) == 5
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "published" not in again.stderr.split("discovered")[-1]


def test_cli_rejects_a_phenomenon_without_mapping() -> None:
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "opensensemap", "--phenomenon",
                           "Wifi-Stärke"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "'Wifi-Stärke' maps to no registry metric" in proc.stderr
