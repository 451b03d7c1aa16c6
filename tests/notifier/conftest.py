"""Notifier fixtures: a real HTTP receiver on loopback, a SQLite store, and the notifier run as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.settings import load_settings
from citysense_common.store import Store, Subscription
from citysense_common.store.factory import open_store
from citysense_common.store.settings import StoreSettings
from citysense_common.webhooks import SubscriptionFilters, generate_secret
from confluent_kafka import Producer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None  # block the response until set (a receiver mid-request)


class Receiver:
    """A webhook receiver: records every request; replies from a script, then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.cond:
                    receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body,
                                                      time.time()))
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                    receiver.cond.notify_all()
                if reply.hold is not None:
                    reply.hold.wait(60)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver got {len(self.requests)} requests, expected {count}")
                self.cond.wait(left)
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def make_event(station_id: str = "st-1", state: AlertState = AlertState.OPEN, severity: Severity = Severity.CRITICAL,
               metric: str = "pm2_5", lat: float = 48.85, lon: float = 2.35) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(event_id=f"ev-{uuid.uuid4().hex}", alert_id=f"al-{uuid.uuid4().hex[:12]}", state=state,
                      kind=AlertKind.THRESHOLD, severity=severity, rule_id="pm25_1m_critical",
                      station_id=station_id, location=Location(lat=lat, lon=lon), metric=metric, value=480.0,
                      threshold=250.0, window="1m", opened_at=now, event_time=now,
                      message="PM2.5 1-minute mean 480 µg/m³ exceeds 250 (US EPA: Hazardous)")


@dataclass
class NotifierHarness:
    bootstrap: str
    env: dict[str, str]
    store: Store
    alerts_topic: str
    log_path: Path
    procs: list[subprocess.Popen] = field(default_factory=list)

    def subscribe(self, url: str, **filters: object) -> Subscription:
        now = datetime.now(UTC)
        sub = Subscription(id=f"sub_{uuid.uuid4().hex[:24]}", url=url, secret=generate_secret(),
                           filters=SubscriptionFilters(**filters).model_dump(mode="json", exclude_none=True),
                           created_at=now, updated_at=now)
        self.store.create_subscription(sub)
        return sub

    def publish(self, *events: AlertEvent, topic: str | None = None) -> None:
        producer = Producer({"bootstrap.servers": self.bootstrap})
        for event in events:
            producer.produce(topic or self.alerts_topic, key=event.station_id.encode(), value=event.to_json())
        assert producer.flush(10) == 0

    def start(self, **extra_env: str) -> subprocess.Popen:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, "-m", "citysense_notifier.cli"], env={**self.env, **extra_env},
                                stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def wait_delivery(self, sub_id: str, event_id: str, status: str, timeout: float = 60.0):  # noqa: ANN201
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = self.store.get_delivery(sub_id, event_id)
            if d is not None and d.status == status:
                return d
            time.sleep(0.1)
        raise AssertionError(f"delivery not {status}: {self.store.get_delivery(sub_id, event_id)}\n{self.logs()}")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def notifier(kafka_broker, unique_topics, tmp_path: Path) -> Iterator[NotifierHarness]:  # noqa: ANN001
    tag = uuid.uuid4().hex[:8]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")},
        "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
        "CITYSENSE_DATA_DIR": str(tmp_path),
        "CITYSENSE_ALERTS_TOPIC": unique_topics["alerts_topic"],
        "CITYSENSE_WEBHOOK_TESTS_TOPIC": f"test.{tag}.webhook-tests",
        "CITYSENSE_NOTIFIER_GROUP": f"test-notifier-{tag}",
        "CITYSENSE_NOTIFIER_METRICS_PORT": "0",
        "CITYSENSE_WEBHOOK_BACKOFF_BASE_S": "0.2",
        "CITYSENSE_SUBSCRIPTIONS_REFRESH_S": "0.2",
        "CITYSENSE_LOG_LEVEL": "INFO",
    }
    settings = load_settings(StoreSettings, data_dir=tmp_path)
    store = open_store(settings)
    harness = NotifierHarness(kafka_broker.bootstrap, env, store, unique_topics["alerts_topic"],
                              tmp_path / "notifier.log")
    yield harness
    harness.stop_all()
    store.close()


@pytest.fixture
def event_factory() -> Callable[..., AlertEvent]:
    return make_event


def parse_body(body: bytes) -> dict:
    return json.loads(body)


@pytest.fixture
def reply() -> type[Reply]:
    """The Reply class, for scripting the receiver (test modules cannot import conftest by name)."""
    return Reply


@pytest.fixture
def receiver_factory() -> Iterator[Callable[[], Receiver]]:
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for r in made:
        r.close()
