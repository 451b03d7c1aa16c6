"""A single-node Apache Kafka broker in KRaft combined mode, run from Maven Central jars.

The node is broker and controller at once, on two loopback ports. Its log lives under ``data_dir`` and survives
restarts (storage is formatted once, on first start). Retention by time and by size applies to every topic,
including ones created without explicit settings, so disk stays bounded; the heap is sized for a laptop.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from citysense_common.jvm.components import KAFKA
from citysense_common.jvm.java import find_java_home
from citysense_common.jvm.maven import Resolved, resolve
from citysense_common.kafka import BrokerUnavailable, wait_for_broker

from citysense_localstack.procs import spawn, stop
from citysense_localstack.servers.net import free_port, port_in_use

Progress = Callable[[str], None]

# Bounds for topics created without their own settings (the contract's topics carry theirs, config/topics.yaml).
DEFAULT_RETENTION_MS = 24 * 3600 * 1000
DEFAULT_RETENTION_BYTES = 256 * 2**20  # per partition
SEGMENT_BYTES = 64 * 2**20  # retention deletes whole segments: small ones keep the bound tight

LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class KafkaError(RuntimeError):
    """The local Kafka broker could not be started; the message names its log."""


def server_properties(*, log_dir: str, port: int, controller_port: int, host: str = "127.0.0.1",
                      advertised_host: str | None = None, node_id: int = 1) -> str:
    """``server.properties`` of a one-node combined broker/controller (also used by the container image)."""
    advertised = advertised_host or host
    props = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": f"{node_id}@{advertised}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{advertised}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": log_dir,
        "num.partitions": 1,
        # One node: every internal topic has one replica, and a consumer group starts without waiting for others.
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # After a crash the restarted node must wait out its own old session before it may register again.
        "broker.session.timeout.ms": 3000,
        "broker.heartbeat.interval.ms": 500,
        "log.retention.ms": DEFAULT_RETENTION_MS,
        "log.retention.bytes": DEFAULT_RETENTION_BYTES,
        "log.segment.bytes": SEGMENT_BYTES,
        "log.retention.check.interval.ms": 60_000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 2,
    }
    return "".join(f"{key}={value}\n" for key, value in props.items())


def jvm_options(heap_mb: int) -> list[str]:
    return [f"-Xms{min(128, heap_mb)}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
            # hand back heap the broker no longer uses (G1 keeps what it grew to otherwise): its share of P6
            "-XX:MaxHeapFreeRatio=20", "-XX:MinHeapFreeRatio=5", "-XX:G1PeriodicGCInterval=5000",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true"]


@dataclass
class KafkaBroker:
    data_dir: Path
    port: int
    controller_port: int
    proc: subprocess.Popen
    version: str = KAFKA.version

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def title(self) -> str:
        return f"{KAFKA.title} {self.version}"

    def stop(self, timeout: float = 30.0) -> int:
        """Controlled shutdown (SIGTERM); SIGKILL if it does not finish in time."""
        return stop(self.proc, timeout=timeout)

    def kill(self) -> int:
        """SIGKILL, as a crash would (for the reliability tests)."""
        return stop(self.proc, timeout=0)


def _java(java_home: Path | None) -> str:
    return str((java_home or find_java_home()) / "bin" / "java")


def format_storage(jars: Resolved, config: Path, log_dir: Path, java: str, log_path: Path | None) -> None:
    """Format the log directory once; a formatted one (``meta.properties``) is left alone."""
    if (log_dir / "meta.properties").exists():
        return
    log4j = f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}"
    argv = [java, "-Xmx256m", "-cp", jars.classpath, log4j, "kafka.tools.StorageTool",
            "format", "-t", _cluster_id(), "-c", str(config), "--ignore-formatted"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if log_path:
        with open(log_path, "a") as log:
            log.write(done.stdout + done.stderr)
    if done.returncode != 0:
        raise KafkaError(f"formatting Kafka storage in {log_dir} failed: {(done.stderr or done.stdout).strip()}")


def _cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, as StorageTool random-uuid makes them; never starting with
    '-', which the storage tool's argument parser would read as an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka(data_dir: Path, *, port: int | None = None, controller_port: int | None = None,
                log_path: Path | None = None, heap_mb: int = 512, timeout: float = 90.0,
                java_home: Path | None = None, progress: Progress = print) -> KafkaBroker:
    """Start the broker on 127.0.0.1:port with its log under ``data_dir`` and wait until it answers."""
    port = port or free_port()
    if port_in_use(port):
        raise KafkaError(f"port {port} is already in use; set CITYSENSE_KAFKA_PORT to a free port, or point "
                         f"CITYSENSE_KAFKA_BOOTSTRAP at the Kafka already running there")
    jars = resolve(KAFKA, java_home=java_home, progress=progress)
    java = _java(java_home)
    data_dir = data_dir.resolve()
    log_dir = data_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    controller_port = controller_port or _kept_controller_port(data_dir) or free_port()
    config = data_dir / "server.properties"
    config.write_text(server_properties(log_dir=str(log_dir), port=port, controller_port=controller_port),
                      encoding="utf-8")
    (data_dir / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
    format_storage(jars, config, log_dir, java, log_path)
    argv = [java, *jvm_options(heap_mb), f"-Dlog4j2.configurationFile={data_dir / 'log4j2.properties'}",
            "-cp", jars.classpath, KAFKA.main_class, str(config)]
    proc = spawn(argv, env=dict(os.environ), log_path=str(log_path) if log_path else None)
    broker = KafkaBroker(data_dir, port, controller_port, proc)
    started = time.monotonic()
    try:
        _wait_ready(broker, timeout, log_path, progress, started)
    except BaseException:
        broker.stop(timeout=5)
        raise
    return broker


def _kept_controller_port(data_dir: Path) -> int | None:
    """The controller port of an earlier run: the quorum's voter address is part of the formatted metadata."""
    config = data_dir / "server.properties"
    if not (data_dir / "log" / "meta.properties").exists() or not config.exists():
        return None
    for line in config.read_text(encoding="utf-8").splitlines():
        if line.startswith("controller.quorum.voters="):
            return int(line.rsplit(":", 1)[1])
    return None


def _wait_ready(broker: KafkaBroker, timeout: float, log_path: Path | None, progress: Progress,
                started: float) -> None:
    deadline = started + timeout
    next_note = started + 5
    while True:
        if broker.proc.poll() is not None:
            raise KafkaError(f"{broker.title} exited with code {broker.proc.returncode} while starting"
                             f"{_log_tail(log_path)}")
        try:
            wait_for_broker(broker.bootstrap, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            return
        except BrokerUnavailable:
            now = time.monotonic()
            if now > deadline:
                raise KafkaError(f"{broker.title} did not answer on {broker.bootstrap} within {timeout:.0f}s"
                                 f"{_log_tail(log_path)}") from None
            if now >= next_note:
                progress(f"  ... waiting for {broker.title} on {broker.bootstrap} ({now - started:.0f} s)")
                next_note = now + 5


def _log_tail(log_path: Path | None, lines: int = 5) -> str:
    if not log_path or not Path(log_path).exists():
        return ""
    text = Path(log_path).read_text(errors="replace").splitlines()
    errors = [ln for ln in text if " ERROR " in ln or "Exception" in ln][-lines:]
    return f"; see {log_path}" + ("".join(f"\n    {ln}" for ln in errors) if errors else "")


@contextlib.contextmanager
def running_kafka(data_dir: Path | None = None, **kwargs: object) -> Iterator[KafkaBroker]:
    """A broker for the block; with no ``data_dir`` its log lives in a temporary folder removed afterwards."""
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="citysense-kafka-")))
        broker = start_kafka(data_dir, **kwargs)  # type: ignore[arg-type]
        stack.callback(broker.stop)
        yield broker
