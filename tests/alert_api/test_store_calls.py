"""Store calls run off the event loop with a time limit: a SQLite file locked by another connection (writers wait up
to the store's 30 s busy timeout) turns a write into a quick 503, while /healthz, reads and live streams go on and
/readyz says the store is slow."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import httpx
from citysense_common.store import Subscription

from .conftest import AUTH, running_api

SUB_ID = "sub_" + "ab" * 12


def _timed_get(url: str, timeout: float = 3) -> tuple[float, httpx.Response | None]:
    started = time.monotonic()
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TimeoutException:
        response = None
    return time.monotonic() - started, response


def test_a_locked_sqlite_file_does_not_freeze_the_api(api_settings, store) -> None:  # noqa: ANN001
    now = datetime.now(UTC)
    store.create_subscription(Subscription(id=SUB_ID, url="http://127.0.0.1:9/hook", secret="whsec_x",  # noqa: S106
                                           description="", filters={}, status="active", created_at=now,
                                           updated_at=now))
    settings = api_settings.model_copy(update={"api_store_timeout_s": 1.0})
    locker = sqlite3.connect(store.path, isolation_level=None, check_same_thread=False)
    with running_api(settings, store) as server:
        assert httpx.get(f"{server.url}/readyz", timeout=10).json()["checks"]["store"] == "ok"
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock; the API's writes must wait for it
        results: dict[str, object] = {}

        def delete() -> None:
            started = time.monotonic()
            try:
                results["delete"] = httpx.delete(f"{server.url}/v1/subscriptions/{SUB_ID}", headers=AUTH,
                                                 timeout=60)
            finally:
                results["delete_s"] = time.monotonic() - started

        writer = threading.Thread(target=delete, daemon=True)
        try:
            writer.start()
            time.sleep(0.3)  # the write is now waiting for the lock
            took, health = _timed_get(f"{server.url}/healthz")
            assert health is not None and health.status_code == 200, f"/healthz hung for {took:.1f} s"
            assert took < 1.0, f"/healthz took {took:.2f} s during the lock"
            took, stations = _timed_get(f"{server.url}/v1/stations")
            assert stations is not None and stations.status_code == 200 and took < 1.0, took
            time.sleep(1.0)  # past the store timeout: the write is still stuck in SQLite
            _, ready = _timed_get(f"{server.url}/readyz", timeout=5)
            assert ready is not None and ready.status_code == 503, ready and ready.text
            assert ready.json()["checks"]["store"].startswith("slow"), ready.json()
            writer.join(10)
            assert not writer.is_alive(), "the write did not come back within 10 s"
            response = results["delete"]
            assert isinstance(response, httpx.Response) and response.status_code == 503, response
            assert response.headers["content-type"] == "application/problem+json"
            assert "slow" in response.json()["detail"] and "Retry-After" in response.headers
            assert results["delete_s"] < 3.0  # type: ignore[operator]
        finally:
            locker.execute("ROLLBACK")
        deadline = time.monotonic() + 40  # the stuck call ends when SQLite gets the lock (at most its busy timeout)
        while httpx.get(f"{server.url}/readyz", timeout=5).json()["checks"]["store"] != "ok":
            assert time.monotonic() < deadline, "/readyz did not recover"
            time.sleep(0.2)
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    locker.close()
