"""The optional Alertmanager sink against the real Alertmanager (Debian's prometheus-alertmanager)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def alertmanager(tmp_path: Path):  # noqa: ANN201
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Alertmanager is not installed: run scripts/bootstrap.d/51-alertmanager "
                    "(or `sudo apt-get install -y prometheus-alertmanager`)")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    port = _free_port()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (tmp_path / "alertmanager.log").read_text()
        assert time.monotonic() < deadline, "Alertmanager did not become ready"
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def test_alerts_are_pushed_to_alertmanager(notifier, alertmanager, event_factory) -> None:
    notifier.start(CITYSENSE_ALERTMANAGER_URL=alertmanager)
    event = event_factory("st-am")
    notifier.publish(event)
    deadline = time.monotonic() + 60
    found = []
    while not found:
        alerts = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
        found = [a for a in alerts if a["labels"].get("alert_id") == event.alert_id]
        if not found:
            assert time.monotonic() < deadline, f"alert never reached Alertmanager\n{notifier.logs()}"
            time.sleep(0.3)
    (alert,) = found
    assert alert["labels"]["alertname"] == event.rule_id
    assert alert["labels"]["station_id"] == "st-am" and alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["summary"] == event.message
    assert alert["status"]["state"] == "active"


def test_a_hanging_alertmanager_does_not_hold_webhooks(notifier, receiver, event_factory) -> None:
    # An "Alertmanager" that never answers in time; with 2 events allowed in flight, events that waited for their
    # push would stop consumption after the second one.
    hanging = socket.create_server(("127.0.0.1", 0))
    try:
        notifier.subscribe(receiver.url)
        notifier.start(CITYSENSE_ALERTMANAGER_URL=f"http://127.0.0.1:{hanging.getsockname()[1]}",
                       CITYSENSE_ALERTMANAGER_TIMEOUT_S="30", CITYSENSE_NOTIFIER_MAX_IN_FLIGHT="2")
        events = [event_factory(f"st-{i}") for i in range(6)]
        notifier.publish(events[0])
        receiver.wait_for(1, timeout=60)
        for event in events[1:]:  # one at a time, so each is consumed after the previous one's push began
            notifier.publish(event)
            time.sleep(0.3)
        got = receiver.wait_for(6, timeout=10)
        assert {r.payload["id"] for r in got} == {e.event_id for e in events}
    finally:
        hanging.close()
