"""Resource limits: request bodies are capped before routing, uvicorn gets a concurrency limit, live streams are
limited per client and in lifetime, and the stream gauge follows streams as they open, end and are refused."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from citysense_alert_api import cli
from citysense_alert_api.app import create_app
from citysense_alert_api.settings import build_settings
from fastapi.testclient import TestClient

from .conftest import TOKEN, running_api

CAP = 4096


@pytest.fixture
def small_cap_client(api_settings, store) -> Iterator[TestClient]:  # noqa: ANN001
    settings = api_settings.model_copy(update={"api_max_body_bytes": CAP})
    with TestClient(create_app(settings, TOKEN, store=store), raise_server_exceptions=False) as c:
        yield c


def _assert_413(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["title"] == "Request body too large"
    assert f"{CAP} bytes" in body["detail"]


def test_body_over_the_cap_with_content_length_is_refused_before_auth(small_cap_client: TestClient) -> None:
    response = small_cap_client.post("/v1/subscriptions", content=b"{" + b" " * (CAP * 4) + b"}",
                                     headers={"Content-Type": "application/json"})  # no token: 413 comes first
    _assert_413(response)


def test_streamed_body_without_content_length_is_refused(small_cap_client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(100):
            yield b" " * 1024

    response = small_cap_client.post("/v1/subscriptions", content=chunks(),
                                     headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    _assert_413(response)


def test_streamed_body_is_cut_off_on_a_real_server(api_settings, store) -> None:  # noqa: ANN001
    settings = api_settings.model_copy(update={"api_max_body_bytes": CAP})
    sent = [0]

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):  # 64 MB if the server read it all
            sent[0] += 64 * 1024
            yield b" " * (64 * 1024)

    with running_api(settings, store) as server:
        try:
            response = httpx.post(f"{server.url}/v1/subscriptions", content=chunks(), timeout=30,
                                  headers={"Content-Type": "application/json"})
        except httpx.TransportError:
            response = None  # the server closed before httpx read its answer; what matters is what was read
        if response is not None:
            _assert_413(response)
        # Socket buffers on both sides take a few MB; the server must not take the rest.
        assert sent[0] < 24 * 1024 * 1024, f"the server accepted {sent[0] / 1e6:.0f} MB of a {CAP}-byte cap"
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200


def test_body_within_the_cap_still_works(small_cap_client: TestClient) -> None:
    response = small_cap_client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"},
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code in (201, 422), response.text  # 422: the URL may be refused; never 413


def test_cli_passes_the_concurrency_limit_to_uvicorn(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    seen: dict[str, object] = {}
    monkeypatch.setenv("CITYSENSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYSENSE_API_LIMIT_CONCURRENCY", "77")
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert cli.main([]) == 0
    assert seen["limit_concurrency"] == 77


def _gauge(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    match = re.search(r"^citysense_api_stream_clients (\S+)$", text, re.MULTILINE)
    assert match, text
    return float(match.group(1))


def _open_stream(base: str, opened: list[int], stop: threading.Event, ended: list[float]) -> None:
    with httpx.stream("GET", f"{base}/v1/alerts/stream", timeout=httpx.Timeout(30, read=30)) as response:
        opened.append(response.status_code)
        if response.status_code == 200:
            for _ in response.iter_raw():
                if stop.is_set():
                    break
    ended.append(time.monotonic())


def _wait(predicate, timeout: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_streams_per_client_are_limited_and_the_gauge_follows(api_settings, store) -> None:  # noqa: ANN001
    settings = api_settings.model_copy(update={"stream_max_per_client": 2})
    with running_api(settings, store) as server:
        stop, opened, ended = threading.Event(), [], []
        threads = [threading.Thread(target=_open_stream, args=(server.url, opened, stop, ended), daemon=True)
                   for _ in range(2)]
        for t in threads:
            t.start()
        _wait(lambda: len(opened) == 2)
        assert opened == [200, 200]
        _wait(lambda: _gauge(server.url) == 2)
        refused = httpx.get(f"{server.url}/v1/alerts/stream", timeout=10)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "2 live streams" in refused.json()["detail"]
        assert _gauge(server.url) == 2  # a refused stream never counts
        stop.set()
        for t in threads:
            t.join(10)
        _wait(lambda: _gauge(server.url) == 0)


def test_streams_end_after_their_lifetime(api_settings, store) -> None:  # noqa: ANN001
    settings = api_settings.model_copy(update={"stream_max_lifetime_s": 1.0, "stream_heartbeat_s": 0.2})
    with running_api(settings, store) as server:
        stop, opened, ended = threading.Event(), [], []
        started = time.monotonic()
        t = threading.Thread(target=_open_stream, args=(server.url, opened, stop, ended), daemon=True)
        t.start()
        t.join(15)
        assert opened == [200] and ended, "the stream did not end"
        assert ended[0] - started < 5
        _wait(lambda: _gauge(server.url) == 0)


def test_limit_settings_have_sane_defaults() -> None:
    settings = build_settings()
    assert 64 * 1024 <= settings.api_max_body_bytes <= 1024 * 1024
    assert settings.api_limit_concurrency > settings.stream_max_clients
    assert settings.stream_max_per_client >= 1 and settings.stream_max_lifetime_s > 0


def test_cli_trusts_forwarded_headers_only_from_configured_proxies(monkeypatch, tmp_path) -> None:  # noqa: ANN001
    seen: dict[str, object] = {}
    monkeypatch.setenv("CITYSENSE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(cli.uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert cli.main([]) == 0
    assert seen["proxy_headers"] is False  # default: the peer address is the client
    monkeypatch.setenv("CITYSENSE_API_FORWARDED_ALLOW_IPS", "10.244.0.0/16")
    assert cli.main([]) == 0
    assert seen["proxy_headers"] is True and seen["forwarded_allow_ips"] == "10.244.0.0/16"


def test_stream_limit_counts_the_forwarded_client_behind_a_trusted_proxy(api_settings, store) -> None:  # noqa: ANN001
    settings = api_settings.model_copy(update={"stream_max_per_client": 1})
    with running_api(settings, store, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as server:
        stop, opened, ended = threading.Event(), [], []
        t = threading.Thread(target=_open_stream, args=(server.url, opened, stop, ended), daemon=True)
        t.start()
        _wait(lambda: len(opened) == 1)
        # Another client behind the same proxy gets its own allowance; the same one does not.
        with httpx.stream("GET", f"{server.url}/v1/alerts/stream", timeout=10,
                          headers={"X-Forwarded-For": "203.0.113.7"}) as response:
            assert response.status_code == 200
        assert httpx.get(f"{server.url}/v1/alerts/stream", timeout=10).status_code == 429
        stop.set()
        t.join(10)
