"""The notifier's process health: a fatal error ends it with a non-zero status, and /healthz follows loop progress."""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import httpx
from citysense_localstack.servers.net import free_port

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stall_hook  # noqa: E402


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _wait_status(url: str, want: int, timeout: float) -> float:
    """Seconds until ``url`` answers ``want``; AssertionError after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _get(url) == want:
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {want} (last: {_get(url)})")


def test_store_failure_exits_non_zero(notifier, receiver, event_factory) -> None:
    notifier.subscribe(receiver.url)
    proc = notifier.start()
    first = event_factory("st-ok")
    notifier.publish(first)
    receiver.wait_for(1)
    db = Path(notifier.env["CITYSENSE_DATA_DIR"]) / "citysense.db"
    with sqlite3.connect(db) as conn:  # the store breaks under the running notifier
        conn.execute("DROP TABLE deliveries")
    notifier.publish(event_factory("st-broken"))
    code = proc.wait(30)
    assert code != 0, f"exited {code} after a fatal store error\n{notifier.logs()}"


def test_healthz_fails_when_the_loop_stalls(notifier, tmp_path: Path) -> None:
    port = free_port()
    flag = tmp_path / "stall"
    proc = notifier.start(stall_hook.command(sys.executable), CITYSENSE_NOTIFIER_METRICS_PORT=str(port),
                          CITYSENSE_NOTIFIER_LIVENESS_TIMEOUT_S="3", CITYSENSE_TEST_STALL_FILE=str(flag))
    healthz = f"http://127.0.0.1:{port}/healthz"
    _wait_status(healthz, 200, 60)
    assert _get(f"http://127.0.0.1:{port}/metrics") == 200
    flag.touch()
    took = _wait_status(healthz, 503, 15)
    assert 2 <= took <= 6, f"/healthz failed {took:.1f} s into the stall (liveness timeout 3 s)"
    flag.unlink()
    _wait_status(healthz, 200, 10)
    assert proc.poll() is None, notifier.logs()


def test_chart_liveness_probe_is_healthz() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
    from chart_helpers import find, render

    deployment = find(render(), "Deployment", "citysense-notifier")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
