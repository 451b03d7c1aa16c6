"""`CITYSENSE_API_WORKERS` > 1: uvicorn worker processes serve the same API with the token resolved at start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from citysense_localstack.servers.net import free_port


def test_two_workers_serve_reads_and_authenticated_writes(tmp_path: Path, kafka_broker) -> None:  # noqa: ANN001
    port = free_port()
    env = {**os.environ, "CITYSENSE_DATA_DIR": str(tmp_path), "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "CITYSENSE_API_PORT": str(port), "CITYSENSE_API_WORKERS": "2"}
    env.pop("CITYSENSE_API_TOKEN", None)  # development: generated once by the parent, shared with the workers
    proc = subprocess.Popen([str(Path(sys.executable).parent / "citysense-alert-api")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "API with 2 workers did not start"
            time.sleep(0.2)
        token = (tmp_path / "api-token").read_text().strip()
        with httpx.Client(base_url=base, timeout=5) as client:
            # Several connections, so both workers answer; each must accept the one token.
            for _ in range(6):
                created = client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"},
                                      headers={"Authorization": f"Bearer {token}"})
                assert created.status_code == 201, created.text
                assert client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"},
                                   headers={"Authorization": "Bearer wrong-token-wrong-token"}).status_code == 403
                client.close()
                client = httpx.Client(base_url=base, timeout=5)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "workers=2" in out
    assert out.count("Application startup complete") == 2, out
