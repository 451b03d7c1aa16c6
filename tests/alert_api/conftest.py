"""Alert API fixtures: the app over a real SQLite store, seeded with stations, readings and alerts."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import uvicorn
from citysense_alert_api.app import create_app
from citysense_alert_api.settings import ApiSettings, build_settings
from citysense_common.citizen.settings import CitizenSettings
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.store import AlertRecord, EnrichedReading, StationRecord, Store
from citysense_common.store.factory import open_store
from confluent_kafka import Producer
from fastapi.testclient import TestClient

TOKEN = "test-token-" + "x" * 24
CITIZEN_SECRET = "citizen-test-secret-" + "q7Zp2" * 6  # signs the citizens' confirm and unsubscribe links
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC).replace(microsecond=0)


def seed(store: Store) -> None:
    stations = [
        StationRecord("st-good", NOW, 10, {"pm2_5": 4.0, "temperature": 21.5}, lat=48.85, lon=2.35),
        StationRecord("st-bad", NOW, 11, {"pm2_5": 150.2, "noise_level": 60.0}, lat=48.86, lon=2.36),
        StationRecord("st-old", NOW - timedelta(hours=2), 3, {"pm2_5": 30.0}, lat=48.87, lon=2.30),
        StationRecord("st-nopm", NOW, 1, {"temperature": 19.0}),
    ]
    store.upsert_stations(stations)
    store.write_readings([
        EnrichedReading("st-good", NOW - timedelta(minutes=i), 100 - i, {"pm2_5": 4.0 + i, "temperature": 20.0})
        for i in range(25)
    ])
    alerts = []
    for i, (station, severity, state, lat, lon) in enumerate([
        ("st-bad", "critical", "active", 48.86, 2.36),
        ("st-bad", "warning", "resolved", 48.86, 2.36),
        ("st-good", "info", "active", 48.85, 2.35),
        ("st-old", "warning", "active", 48.87, 2.30),
    ]):
        opened = NOW - timedelta(minutes=10 * (i + 1))
        alerts.append(AlertRecord(
            alert_id=f"al-{i}", station_id=station, rule_id=f"rule-{i}", kind="threshold", severity=severity,
            state=state, opened_at=opened, updated_at=opened, message=f"alert {i}", last_event_id=f"ev-{i}",
            metric="pm2_5", value=100.0, threshold=50.0, window="1m", lat=lat, lon=lon,
            resolved_at=opened + timedelta(minutes=5) if state == "resolved" else None))
    store.upsert_alerts(alerts)


@pytest.fixture
def api_settings(tmp_path: Path, kafka_broker, unique_topics) -> ApiSettings:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    citizen = CitizenSettings(secret=CITIZEN_SECRET, mail_topic=f"test.{tag}.citizen-mail")
    return build_settings(data_dir=tmp_path, kafka_bootstrap=kafka_broker.bootstrap,
                          webhook_tests_topic=f"test.{tag}.webhook-tests", citizen=citizen, **unique_topics)


@pytest.fixture
def store(api_settings: ApiSettings) -> Iterator[Store]:
    s = open_store(api_settings)
    seed(s)
    yield s
    s.close()


@pytest.fixture
def client(api_settings: ApiSettings, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings, TOKEN, store=store), raise_server_exceptions=False) as c:
        yield c


@dataclass
class LiveServer:
    url: str
    store: Store
    settings: ApiSettings

    def publish(self, event: AlertEvent) -> None:
        producer = Producer({"bootstrap.servers": self.settings.bootstrap})
        producer.produce(self.settings.alerts_topic, key=event.station_id.encode(), value=event.to_json())
        assert producer.flush(10) == 0


@contextlib.contextmanager
def running_api(settings: ApiSettings, store: Store, **uvicorn_options: object) -> Iterator[LiveServer]:
    """The API on a real uvicorn server on a free loopback port (SSE and the browser need a real socket)."""
    ensure_topics(settings.bootstrap, [TopicSpec(settings.alerts_topic, 1)])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings, TOKEN, store=store), host="127.0.0.1", port=port,
                            log_level="warning", log_config=None, **uvicorn_options)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", store, settings)
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server(api_settings: ApiSettings, store: Store) -> Iterator[LiveServer]:
    with running_api(api_settings, store) as server:
        yield server


def alert_event(station_id: str = "st-bad", message: str = "PM2.5 hazardous") -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(event_id=f"ev-{uuid.uuid4().hex}", alert_id=f"al-{uuid.uuid4().hex[:10]}",
                      state=AlertState.OPEN, kind=AlertKind.THRESHOLD, severity=Severity.CRITICAL,
                      rule_id="pm25_1m", station_id=station_id, location=Location(lat=48.86, lon=2.36),
                      metric="pm2_5", value=400.0, threshold=250.0, window="1m", opened_at=now, event_time=now,
                      message=message)
