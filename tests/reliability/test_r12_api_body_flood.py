"""R12: a 100 MB unauthenticated request body against a real ``citysense-alert-api`` process.

The body is refused (413) before the API buffers it, whether it announces its length (Content-Length) or streams
without one (chunked); the process's peak RSS grows by less than 32 MiB and the API stays healthy.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from citysense_localstack.servers.net import free_port

BODY_BYTES = 100 * 1000 * 1000
CHUNK = b" " * (1024 * 1024)
MAX_GROWTH_KIB = 32 * 1024


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def _reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak below is this request's.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@pytest.fixture
def api_process(tmp_path: Path, kafka_broker) -> Iterator[tuple[str, subprocess.Popen]]:  # noqa: ANN001
    port = free_port()
    env = {**os.environ, "CITYSENSE_DATA_DIR": str(tmp_path), "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "CITYSENSE_API_PORT": str(port), "CITYSENSE_API_WORKERS": "1"}
    env.pop("CITYSENSE_API_TOKEN", None)
    log = (tmp_path / "api.log").open("w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "citysense-alert-api")], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "the API did not start"
            time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _flood(port: int, chunked: bool) -> tuple[bytes, int]:
    """POST a 100 MB body without a token; return the response head and the bytes the server let us send."""
    head = (b"POST /v1/subscriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + (b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {BODY_BYTES}\r\n".encode())
            + b"\r\n")
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sent = [0]

    def send_body() -> None:
        try:
            while sent[0] < BODY_BYTES:
                data = CHUNK[:BODY_BYTES - sent[0]]
                sock.sendall((b"%x\r\n" % len(data) + data + b"\r\n") if chunked else data)
                sent[0] += len(data)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server refused the rest and closed the connection: what we want

    sock.sendall(head)
    sender = threading.Thread(target=send_body, daemon=True)
    sender.start()
    response = b""
    try:
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            if not data:
                break
            response += data
    finally:
        sender.join(30)
        sock.close()
    return response, sent[0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_r12_unauthenticated_body_flood(api_process: tuple[str, subprocess.Popen], chunked: bool) -> None:
    base, proc = api_process
    port = int(base.rsplit(":", 1)[1])
    for _ in range(20):  # warm up: imports and first-request allocations are not the flood's
        httpx.get(f"{base}/v1/alerts", timeout=5)
        httpx.post(f"{base}/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, timeout=5)
    before = _status_kib(proc.pid, "VmRSS")
    _reset_peak(proc.pid)
    started = time.monotonic()
    response, sent = _flood(port, chunked)
    peak = _status_kib(proc.pid, "VmHWM")
    status_line = response.split(b"\r\n")[0]
    print(f"R12 {'chunked' if chunked else 'content-length'}: status line {status_line!r}, "
          f"{sent / 1e6:.1f} MB sent before the cut, RSS {before / 1024:.1f} MiB -> peak {peak / 1024:.1f} MiB "
          f"(+{(peak - before) / 1024:.1f} MiB), {time.monotonic() - started:.2f} s")
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    assert b"application/problem+json" in response
    assert peak - before < MAX_GROWTH_KIB, f"RSS grew by {(peak - before) / 1024:.1f} MiB"
    health = httpx.get(f"{base}/healthz", timeout=5)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert proc.poll() is None
