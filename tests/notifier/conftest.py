"""Notifier fixtures: a real HTTP receiver on loopback, a SQLite store, the notifier run as a real process, and
real MQTT brokers (Debian's mosquitto) on loopback.

The receiver is the shared one (citysense_common.testing.webhook_receiver).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.settings import load_settings
from citysense_common.store import Store, Subscription
from citysense_common.store.factory import open_store
from citysense_common.store.settings import StoreSettings
from citysense_common.testing.webhook_receiver import Reply, WebhookReceiver
from citysense_common.webhooks import SubscriptionFilters, generate_secret
from confluent_kafka import Producer


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
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

    def start(self, command: list[str] | None = None, **extra_env: str) -> subprocess.Popen:
        """Run the notifier (``command``: another way to start it, e.g. with a test hook installed first)."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(command or [sys.executable, "-m", "citysense_notifier.cli"],
                                env={**self.env, **extra_env}, stdout=log, stderr=subprocess.STDOUT)
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
        "CITYSENSE_WEBHOOK_RETRIES_TOPIC": f"test.{tag}.webhook-retries",
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
def receiver_factory() -> Iterator[Callable[[], WebhookReceiver]]:
    made: list[WebhookReceiver] = []

    def make() -> WebhookReceiver:
        made.append(WebhookReceiver())
        return made[-1]

    yield make
    for r in made:
        r.close()


class SlowReceiver:
    """A webhook receiver that answers slowly on purpose, on loopback (``url``); ``arrivals`` times each request.

    ``trickle``: the status line and headers one byte every ``interval`` s (each read of the client gets something,
    so only an overall deadline ends the attempt). ``huge``: a 500 with a ``body_size`` body sent as fast as the
    client reads; ``sent`` counts what the client accepted before it hung up.
    """

    def __init__(self, mode: str, interval: float = 0.25, body_size: int = 256 << 20) -> None:
        self.mode, self.interval, self.body_size = mode, interval, body_size
        self.arrivals: list[float] = []
        self.sent = 0
        self._lock = threading.Lock()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                with self._lock:
                    self.arrivals.append(time.time())
                if self.mode == "trickle":
                    for byte in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 10_000:
                        if self._closed.wait(self.interval):
                            return
                        conn.sendall(bytes([byte]))
                else:
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n"
                                 b"content-length: %d\r\n\r\n" % self.body_size)
                    block = b"x" * 65536
                    left = self.body_size
                    while left > 0 and not self._closed.is_set():
                        n = conn.send(block[:left])
                        with self._lock:
                            self.sent += n
                        left -= n
            except OSError:
                return

    def close(self) -> None:
        self._closed.set()
        self.sock.close()


@pytest.fixture
def slow_receiver_factory() -> Iterator[Callable[..., SlowReceiver]]:
    made: list[SlowReceiver] = []

    def make(mode: str, **kwargs: float) -> SlowReceiver:
        made.append(SlowReceiver(mode, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


@dataclass
class MosquittoBroker:
    """One mosquitto process on ``127.0.0.1:port``; with ``users`` it refuses anonymous clients. With ``tls`` it
    also listens with TLS on ``tls_port``, its certificate (for localhost and 127.0.0.1) signed by ``ca_file``."""

    port: int
    workdir: Path
    users: dict[str, str] = field(default_factory=dict)
    tls_port: int | None = None
    proc: subprocess.Popen | None = None

    @property
    def ca_file(self) -> Path:
        return self.workdir / "ca.pem"

    def _make_certificates(self) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.fail("openssl is not installed: run scripts/bootstrap.d/52-mosquitto")
        d = self.workdir
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        (d / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        for args in (
            ["req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=citysense test CA"],
            ["req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.cnf"],
        ):
            subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    def start(self) -> MosquittoBroker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed: run scripts/bootstrap.d/52-mosquitto "
                        "(or `sudo apt-get install -y mosquitto`)")
        lines = [
            # As root mosquitto would switch to its own user, who cannot read the test's files: stay who we are.
            f"user {getpass.getuser()}",
            f"listener {self.port} 127.0.0.1",
            "persistence false",
            "log_dest stderr",
            "log_type all",
        ]
        if self.users:
            passwords = self.workdir / "passwords"
            passwords.write_text("")
            for user, password in self.users.items():
                subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b",
                                str(passwords), user, password], check=True, capture_output=True)
            # per_listener_settings is off: these apply to every listener.
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls_port is not None:
            self._make_certificates()
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca_file}",
                      f"certfile {self.workdir / 'server.pem'}", f"keyfile {self.workdir / 'server.key'}"]
        config = self.workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                assert self.proc.poll() is None, self.logs()
                assert time.monotonic() < deadline, f"mosquitto did not listen\n{self.logs()}"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., MosquittoBroker]]:
    """Make brokers: ``make(users={"name": "password"}, port=..., tls=False, start=True)``; all stop at the end of
    the test."""
    made: list[MosquittoBroker] = []

    def make(users: dict[str, str] | None = None, port: int | None = None, tls: bool = False,
             start: bool = True) -> MosquittoBroker:
        workdir = tmp_path / f"mosquitto-{len(made)}"
        workdir.mkdir()
        broker = MosquittoBroker(port or free_port(), workdir, users or {}, tls_port=free_port() if tls else None)
        made.append(broker)
        return broker.start() if start else broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., MosquittoBroker]) -> MosquittoBroker:
    """An anonymous broker on a free loopback port."""
    return mosquitto_factory()


class SmtpServer:
    """A real SMTP server (aiosmtpd) on loopback that keeps every accepted email (``messages``, parsed).

    ``tls``: a self-signed certificate for 127.0.0.1 (written to ``ca_file`` for the client to trust) offered with
    STARTTLS, and required; ``implicit_tls``: the same certificate, TLS from the first byte; ``users``: AUTH
    required with these credentials; ``refuse``: every DATA is answered with this reply instead of being kept.
    """

    def __init__(self, tmp_path: Path, *, tls: bool = False, implicit_tls: bool = False,
                 users: dict[str, str] | None = None, refuse: str | None = None) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse = refuse
        self.logins: list[str] = []
        self.ca_file: Path | None = None
        kwargs: dict = {}
        if tls:
            self.ca_file, context = _self_signed(tmp_path)
            kwargs.update(tls_context=context, require_starttls=True)
        elif implicit_tls:
            self.ca_file, context = _self_signed(tmp_path)
            kwargs.update(ssl_context=context)
        if users is not None:
            def authenticate(server, session, envelope, mechanism, auth_data):  # noqa: ANN001, ANN202, ARG001
                ok = isinstance(auth_data, LoginPassword) and users.get(auth_data.login.decode()) == \
                    auth_data.password.decode()
                if ok:
                    self.logins.append(auth_data.login.decode())
                return AuthResult(success=ok, handled=False)
            # auth_require_tls looks at STARTTLS only: over implicit TLS aiosmtpd would offer no AUTH at all.
            kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=tls)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook
        import email
        import email.policy

        if self.refuse:
            return self.refuse
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 2.0.0 OK"

    def wait_for(self, count: int, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.messages) >= count, f"{len(self.messages)} emails arrived, expected {count}"
        return self.messages

    def close(self) -> None:
        self.controller.stop()


def _self_signed(tmp_path: Path):  # noqa: ANN202
    """A fresh key and certificate for 127.0.0.1: the certificate file and the server's TLS context."""
    import ipaddress
    import ssl
    from datetime import timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "citysense test SMTP")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "smtp-cert.pem", tmp_path / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store of its own (the notifier process of the ``notifier`` fixture opens another)."""
    s = open_store(load_settings(StoreSettings, data_dir=tmp_path))
    yield s
    s.close()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[Callable[..., SmtpServer]]:
    """Start real SMTP servers on loopback: ``smtp_server(tls=True, users={...}, refuse="550 ...")``."""
    made: list[SmtpServer] = []

    def make(**kwargs: object) -> SmtpServer:
        made.append(SmtpServer(tmp_path, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for server in made:
        server.close()
