"""PinnedTransport: one lookup per request, the connection to the checked address, TLS verified for the name."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from citysense_common.webhooks import UnsafeWebhookURL, parse_allowed_networks
from citysense_notifier.transport import PinnedTransport

LOOPBACK = parse_allowed_networks("127.0.0.0/8")


def _cert(tmp: Path, name: str) -> tuple[Path, Path]:
    key, crt = tmp / f"{name}.key", tmp / f"{name}.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


class _Server:
    """HTTP(S) on 127.0.0.1 recording the Host header and the TLS SNI of each request."""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.hosts.append(self.headers["host"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*cert)
            ctx.sni_callback = lambda sock, name, _ctx: self.sni.append(name)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _resolver(answers: list[str]):  # noqa: ANN202
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list:
        calls.append(host)
        return [ipaddress.ip_address(answers[min(len(calls), len(answers)) - 1])]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


def _post(transport: PinnedTransport, url: str) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, timeout=5) as client:
            return await client.post(url, content=b"{}")
    return asyncio.run(go())


def test_connects_to_the_checked_address_resolving_once() -> None:
    server = _Server()
    try:
        # Checked: 127.0.0.1 (allowed). A second lookup would say 127.0.0.2, where nothing listens.
        resolve = _resolver(["127.0.0.1", "127.0.0.2"])
        response = _post(PinnedTransport(LOOPBACK, resolve), f"http://hook.example:{server.port}/x")
        assert response.status_code == 204
        assert resolve.calls == ["hook.example"]
        assert server.hosts == [f"hook.example:{server.port}"]
    finally:
        server.close()


def test_tls_sni_and_certificate_are_for_the_host_name(tmp_path: Path) -> None:
    crt, key = _cert(tmp_path, "pinned.test")
    server = _Server((crt, key))
    try:
        verify = ssl.create_default_context(cafile=str(crt))
        transport = PinnedTransport(LOOPBACK, _resolver(["127.0.0.1"]), verify=verify)
        assert _post(transport, f"https://pinned.test:{server.port}/x").status_code == 204
        assert server.sni == ["pinned.test"]
        assert server.hosts == [f"pinned.test:{server.port}"]
        # The same server under another name: the certificate does not match, so nothing is sent.
        other = PinnedTransport(LOOPBACK, _resolver(["127.0.0.1"]), verify=verify)
        with pytest.raises(httpx.ConnectError, match="(?i)certificate|hostname"):
            _post(other, f"https://other.test:{server.port}/x")
        assert len(server.hosts) == 1
    finally:
        server.close()


def test_refused_address_raises_before_connecting() -> None:
    resolve = _resolver(["127.0.0.1"])
    with pytest.raises(UnsafeWebhookURL, match="loopback"):
        _post(PinnedTransport((), resolve), "http://hook.example:9/x")
