"""``make up``: the whole pipeline on one machine, supervised, stopped cleanly on Ctrl-C or SIGTERM.

Order: Kafka -> topics -> (Cassandra, with ``CITYSENSE_STORE=cassandra``) -> scorer -> alert API -> (mail sink) ->
(MQTT broker) -> notifier -> simulator; stopping runs the other way, so producers stop before their consumers and the
servers go last. Kafka and Cassandra keep their data under DATA_DIR (``kafka/``, ``cassandra/``) across runs. Without
CITYSENSE_SMTP_HOST the notifier's email goes to a local development mail sink that keeps every email under
DATA_DIR/mail and delivers none (:mod:`citysense_localstack.servers.mail`). Without CITYSENSE_MQTT_HOST, and with
Debian's mosquitto installed, the notifier publishes to a local broker on loopback (``mosquitto_sub -p 1883 -t
'citysense/alerts/#' -v`` follows it). A component that dies is restarted
with backoff (the scorer resumes from its checkpoint); so is Kafka, on the same port and data. Children run in their
own process groups with a parent-death signal, so even a SIGKILLed launcher leaves no orphan behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from citysense_common.jvm.java import JavaNotFound, ensure_java
from citysense_common.kafka import default_topics, ensure_topics, wait_for_broker
from citysense_common.settings import load_settings
from citysense_common.store.settings import StoreSettings
from pydantic import Field

from citysense_localstack.procs import spawn, stop
from citysense_localstack.servers.kafka import KafkaBroker, start_kafka

log = logging.getLogger("citysense.stack")

RESTART_LIMIT = 5  # restarts of one component within RESTART_WINDOW_S before the stack gives up on it
RESTART_WINDOW_S = 300.0


class StackSettings(StoreSettings):
    stations: int = Field(default=50, ge=0, description="simulated stations; 0 runs no simulator")
    rate_hz: float = Field(default=1.0, gt=0)
    api_port: int = Field(default=8000, ge=1, le=65535)
    instance_id: str = Field(default="local-0", description="simulator identity -> station ids st-0-NNNNN")
    webhook_allowed_networks: str = Field(default="127.0.0.0/8,::1/128",
                                          description="local subscribers may be on this machine")
    env: str = Field(default="development")
    kafka_heap_mb: int = Field(default=512, ge=128, description="heap of the local Kafka broker")
    cassandra_heap_mb: int = Field(default=768, ge=256, description="heap of the local Cassandra node")
    components: str = Field(default="scorer,alert-api,notifier,simulator",
                            description="which components to run, comma-separated")
    smtp_host: str | None = Field(default=None, description="a real SMTP server for citizens' email (with the other "
                                                            "CITYSENSE_SMTP_* settings); unset = the local mail sink")
    mail_sink_port: int = Field(default=8025, ge=1, le=65535,
                                description="port of the local development mail sink (when smtp_host is unset)")
    mqtt_host: str | None = Field(default=None, description="a real MQTT broker for public alerts (with the other "
                                                            "CITYSENSE_MQTT_* settings); unset = a local mosquitto")
    mqtt_broker_port: int = Field(default=1883, ge=1, le=65535,
                                  description="port of the local MQTT broker (when mqtt_host is unset)")


@dataclass
class Component:
    name: str
    module: str  # a module whose presence means the component is installed; "" = argv[0] is a program on this machine
    argv: list[str]
    address: str = ""
    proc: subprocess.Popen | None = None
    restarts: list[float] = field(default_factory=list)
    gave_up: bool = False


def _available(module: str, argv: list[str]) -> bool:
    if not module:
        return Path(argv[0]).is_file()
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _executable(name: str) -> str:
    # Prefer the command installed beside this interpreter (the project's venv) over anything on PATH.
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def plan(settings: StackSettings) -> list[Component]:
    wanted = {part.strip() for part in settings.components.split(",") if part.strip()}
    components = [
        Component("scorer", "citysense_scorer.cli", [_executable("citysense-scorer"), "stream"]),
        Component("alert-api", "citysense_alert_api.cli", [_executable("citysense-alert-api")],
                  f"http://127.0.0.1:{settings.api_port}"),
        Component("mail-sink", "aiosmtpd", [sys.executable, "-m", "citysense_localstack.servers.mail",
                                            "--port", str(settings.mail_sink_port),
                                            "--dir", str(mail_dir(settings))],
                  f"smtp://127.0.0.1:{settings.mail_sink_port}"),
        Component("mqtt-broker", "", [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c",
                                      str(mqtt_config(settings))], f"mqtt://127.0.0.1:{settings.mqtt_broker_port}"),
        Component("notifier", "citysense_notifier.cli", [_executable("citysense-notifier")]),
        Component("simulator", "citysense_simulator.cli", [_executable("citysense-simulator"), "run"]),
    ]
    if "notifier" in wanted and not settings.smtp_host:
        wanted.add("mail-sink")  # the notifier's email stays on this machine unless a real server is configured
    if "notifier" in wanted and not settings.mqtt_host:
        wanted.add("mqtt-broker")  # skipped (with a warning) where mosquitto is not installed
    chosen = []
    for component in components:
        if component.name not in wanted:
            continue
        if component.name == "simulator" and settings.stations == 0:
            continue
        if not _available(component.module, component.argv):
            log.warning("%s is not installed (no %s); skipping it", component.name,
                        component.module or component.argv[0])
            continue
        chosen.append(component)
    return chosen


def mail_dir(settings: StackSettings) -> Path:
    return settings.data_dir.resolve() / "mail"


def mqtt_config(settings: StackSettings) -> Path:
    return settings.data_dir.resolve() / "mqtt" / "mosquitto.conf"


def write_mqtt_config(settings: StackSettings) -> None:
    """Loopback only, anonymous, nothing on disk: retained alert states live as long as the broker."""
    path = mqtt_config(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"listener {settings.mqtt_broker_port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest stdout\n", encoding="utf-8")


class Stack:
    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.stopping = StopFlag()
        self.broker: KafkaBroker | None = None
        self.cassandra = None  # the local Cassandra node, with CITYSENSE_STORE=cassandra and no hosts set
        self.components = plan(settings)

    # ---- environment handed to every child -------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update({
            "CITYSENSE_KAFKA_BOOTSTRAP": s.bootstrap,
            "CITYSENSE_DATA_DIR": str(self.data_dir),
            "CITYSENSE_ENV": env.get("CITYSENSE_ENV", s.env),
            "CITYSENSE_API_PORT": str(s.api_port),
            "CITYSENSE_STATIONS": str(s.stations),
            "CITYSENSE_RATE_HZ": str(s.rate_hz),
            "CITYSENSE_INSTANCE_ID": s.instance_id,
            "CITYSENSE_WEBHOOK_ALLOWED_NETWORKS": env.get("CITYSENSE_WEBHOOK_ALLOWED_NETWORKS",
                                                          s.webhook_allowed_networks),
            "CITYSENSE_STORE": s.store,
            # The links in citizens' email lead to this stack's API unless another address is configured.
            "CITYSENSE_CITIZEN_PUBLIC_URL": env.get("CITYSENSE_CITIZEN_PUBLIC_URL", f"http://127.0.0.1:{s.api_port}"),
            "PYTHONUNBUFFERED": "1",
        })
        if any(c.name == "mail-sink" for c in self.components):
            env.update({"CITYSENSE_SMTP_HOST": "127.0.0.1", "CITYSENSE_SMTP_PORT": str(s.mail_sink_port),
                        "CITYSENSE_SMTP_SECURITY": "none"})
        if any(c.name == "mqtt-broker" for c in self.components):
            env.update({"CITYSENSE_MQTT_HOST": "127.0.0.1", "CITYSENSE_MQTT_PORT": str(s.mqtt_broker_port)})
        if s.store == "cassandra":  # the local node's address once it runs, or the configured cluster
            env.update({"CITYSENSE_CASSANDRA_HOSTS": ",".join(s.cassandra_hosts),
                        "CITYSENSE_CASSANDRA_PORT": str(s.cassandra_port)})
        return env

    # ---- start ------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        s = self.settings
        if s.kafka_bootstrap:
            log.info("using Kafka at %s (no local broker)", s.kafka_bootstrap)
            wait_for_broker(s.kafka_bootstrap, timeout=30, extra=s.kafka_options)
        else:
            log.info("starting Apache Kafka on 127.0.0.1:%d (data: %s)", s.kafka_port, self.data_dir / "kafka")
            self.broker = self._start_kafka()
            log.info("%s is up on %s", self.broker.title, self.broker.bootstrap)
        created = ensure_topics(s.bootstrap, default_topics(s), extra=s.kafka_options)
        log.info("topics ready%s", f" (created {', '.join(created)})" if created else "")
        if s.store == "cassandra":
            self._start_store()
        if any(c.name == "scorer" for c in self.components):
            log.info("Java for Spark: %s", ensure_java())
        env = self.child_env()
        if any(c.name == "mqtt-broker" for c in self.components):
            write_mqtt_config(s)
        for component in self.components:
            if self.stopping.is_set():
                return
            self._launch(component, env)
            if component.name == "alert-api":
                self._wait_http(component, f"{component.address}/healthz")
        self._write_state()

    def _start_kafka(self) -> KafkaBroker:
        return start_kafka(self.data_dir / "kafka", port=self.settings.kafka_port, log_path=self.logs / "kafka.log",
                           heap_mb=self.settings.kafka_heap_mb, progress=_progress)

    def _start_store(self) -> None:
        """Cassandra: the configured cluster, or a local node under DATA_DIR/cassandra; then the CQL migrations."""
        from citysense_common.store.factory import open_store

        s = self.settings
        if s.cassandra_hosts:
            log.info("using Cassandra at %s:%d (no local node)", ",".join(s.cassandra_hosts), s.cassandra_port)
        else:
            from citysense_localstack.servers.cassandra import start_cassandra

            log.info("starting Apache Cassandra on 127.0.0.1:%d (data: %s)", s.cassandra_port,
                     self.data_dir / "cassandra")
            self.cassandra = start_cassandra(self.data_dir / "cassandra", port=s.cassandra_port,
                                             log_path=self.logs / "cassandra.log", heap_mb=s.cassandra_heap_mb,
                                             progress=_progress)
            s = self.settings = s.model_copy(update={"cassandra_hosts": [self.cassandra.host]})
        open_store(s).close()  # applies the CQL migrations before any component starts
        log.info("Cassandra store ready (keyspace %s)", s.cassandra_keyspace)

    def _launch(self, component: Component, env: dict[str, str]) -> None:
        component.proc = spawn(component.argv, env=env, log_path=str(self.logs / f"{component.name}.log"))
        log.info("started %-9s pid %d", component.name, component.proc.pid)

    def _wait_http(self, component: Component, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stopping.is_set():
            if component.proc and component.proc.poll() is not None:
                return  # supervision reports and restarts it
            try:
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        log.warning("%s did not answer %s within %.0fs; see %s", component.name, url, timeout,
                    self.logs / f"{component.name}.log")

    def _write_state(self) -> None:
        state = {"launcher": os.getpid(),
                 "broker": self.broker.proc.pid if self.broker else None,
                 "cassandra": self.cassandra.proc.pid if self.cassandra else None,
                 "components": {c.name: c.proc.pid for c in self.components if c.proc}}
        (self.data_dir / "stack.json").write_text(json.dumps(state, indent=2), encoding="utf-8")

    def summary(self) -> str:
        s = self.settings
        kind = f" ({self.broker.title})" if self.broker else ""
        rows = [("kafka", s.bootstrap + kind, "kafka.log")]
        if s.store == "cassandra":
            where = f"{','.join(s.cassandra_hosts)}:{s.cassandra_port}"
            rows.append(("cassandra", where + (f" ({self.cassandra.title})" if self.cassandra else ""),
                         "cassandra.log"))
        for c in self.components:
            rows.append((c.name, c.address or "-", f"{c.name}.log"))
        width = max(len(r[0]) for r in rows)
        lines = [f"  {name:<{width}}  {where:<40}  {self.logs / logfile}" for name, where, logfile in rows]
        token_file = self.data_dir / "api-token"
        extra = [f"  API token: {token_file} (use: Authorization: Bearer $(cat {token_file}))"] \
            if token_file.exists() else []
        if any(c.name == "mail-sink" for c in self.components):
            extra += [f"  Email: LOCAL DEVELOPMENT MAIL SINK, nothing is delivered: every email is kept under "
                      f"{mail_dir(s)}/ (*.eml).",
                      "         For real email set CITYSENSE_SMTP_HOST (and _PORT, _SECURITY, _USERNAME, _PASSWORD, "
                      "_FROM_ADDRESS) before `make up`."]
        elif any(c.name == "notifier" for c in self.components):
            extra += [f"  Email: through the SMTP server {s.smtp_host} (CITYSENSE_SMTP_*)."]
        if any(c.name == "mqtt-broker" for c in self.components):
            extra += [f"  MQTT: public alerts on a local broker: mosquitto_sub -p {s.mqtt_broker_port} "
                      "-t 'citysense/alerts/#' -v (Debian package mosquitto-clients; CITYSENSE_MQTT_HOST for a broker "
                      "of your own)."]
        return "\n".join(["citysense is running:", *lines, *extra, "  Ctrl-C stops everything."])

    # ---- supervise --------------------------------------------------------------------------------------
    def supervise(self, poll_s: float = 1.0) -> None:
        env = self.child_env()
        while not self.stopping.wait(poll_s):
            if self.broker and self.broker.proc.poll() is not None:
                self._restart_kafka()
            for component in self.components:
                proc = component.proc
                if proc is None or proc.poll() is None or component.gave_up:
                    continue
                now = time.monotonic()
                component.restarts = [t for t in component.restarts if now - t < RESTART_WINDOW_S]
                if len(component.restarts) >= RESTART_LIMIT:
                    log.error("%s keeps failing (exit %s); not restarting it — see %s", component.name,
                              proc.returncode, self.logs / f"{component.name}.log")
                    component.gave_up = True
                    continue
                delay = min(30.0, 2.0 ** len(component.restarts))
                log.warning("%s exited with code %s; restarting in %.0fs", component.name, proc.returncode, delay)
                component.restarts.append(now)
                if self.stopping.wait(delay):
                    break
                self._launch(component, env)
                self._write_state()

    # ---- stop -------------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        self.stopping.set()
        for component in reversed(self.components):
            if component.proc is not None:
                code = stop(component.proc, timeout=20)
                # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop too.
                how = "on SIGTERM" if code == -signal.SIGTERM else f"exit {code}"
                log.info("stopped %-9s (%s)", component.name, how)
        if self.cassandra:
            self.cassandra.stop()
            log.info("stopped cassandra")
        if self.broker:
            self.broker.stop()
            log.info("stopped kafka")

    def _restart_kafka(self) -> None:
        """The broker died: start it again on the same port and data; clients reconnect by themselves."""
        assert self.broker is not None
        log.error("Kafka exited (code %s); restarting it — see %s", self.broker.proc.returncode,
                  self.logs / "kafka.log")
        try:
            self.broker = self._start_kafka()
            log.info("%s is back on %s", self.broker.title, self.broker.bootstrap)
            self._write_state()
        except Exception as exc:  # noqa: BLE001 - report and stop the stack: nothing works without Kafka
            log.error("could not restart Kafka: %s; stopping the stack", exc)
            self.broker = None
            self.stopping.set()


def _progress(message: str) -> None:
    log.info("%s", message.strip())


class StopFlag:
    """A stop request that signal handlers may set. Not a ``threading.Event``: its ``set`` takes a lock, and a second
    Ctrl-C arriving while the first handler held that lock (handlers run in the main thread, between bytecodes)
    deadlocked the launcher with every process still running. A plain attribute needs no lock; waiters poll it."""

    def __init__(self, poll_s: float = 0.1) -> None:
        self._set = False
        self._poll_s = poll_s

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self._set and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(self._poll_s, left))
        return self._set


def load(**overrides: object) -> StackSettings:
    return load_settings(StackSettings, **overrides)


def up(settings: StackSettings) -> int:
    stack = Stack(settings)

    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # No logging here: a second Ctrl-C can interrupt this handler between its check and its log call, which
        # printed "stopping" twice. The main flow reports the first signal once.
        received.append(signum)
        stack.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        if not stack.stopping.is_set():
            print(stack.summary(), flush=True)
            stack.supervise()
    except JavaNotFound as exc:
        log.error("%s", exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - report any start failure in one line, then clean up
        log.error("could not start the stack: %s", exc)
        return 1
    finally:
        if received:
            log.info("received %s; stopping", signal.Signals(received[0]).name)
        stack.shutdown()
        # Interpreter shutdown puts the default handlers back, so a Ctrl-C still in flight after a clean stop
        # would kill the launcher with -SIGINT. Everything is stopped by now: ignore further stop requests.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return 0
