"""Security headers on the citizen page and the API, and a /docs page that loads nothing from another host (users
paste the write token into it)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

PATHS = ["/", "/static/app.js", "/v1/stations", "/v1/alerts", "/docs", "/openapi.json", "/healthz", "/nope"]


def _directives(csp: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in csp.split(";") if part.strip()}


@pytest.mark.parametrize("path", PATHS)
def test_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    headers = response.headers
    assert headers.get("x-content-type-options") == "nosniff", (path, dict(headers))
    assert headers.get("referrer-policy") == "no-referrer"
    assert headers.get("x-frame-options") == "DENY"
    csp = headers.get("content-security-policy", "")
    directives = _directives(csp)
    assert directives.get("frame-ancestors") == "frame-ancestors 'none'", csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
    assert "default-src" in directives and "object-src" in directives and "base-uri" in directives, csp


def test_refused_body_has_the_headers_too(client: TestClient) -> None:
    response = client.post("/v1/subscriptions", content=b"x" * (2 * 1024 * 1024))
    assert response.status_code == 413
    assert response.headers.get("x-content-type-options") == "nosniff"


def test_docs_loads_nothing_from_another_host(client: TestClient) -> None:
    html = client.get("/docs").text
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert refs, html
    for ref in refs:
        assert not re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", ref, re.IGNORECASE), f"/docs references {ref}"
        asset = client.get(ref)
        assert asset.status_code == 200, ref
    assert not re.search(r"https?://", html), "a URL to another host in /docs"
    # No inline script: the CSP allows scripts from this origin only.
    for body in re.findall(r"<script[^>]*>(.*?)</script>", html, re.DOTALL):
        assert not body.strip(), f"inline script in /docs: {body[:80]!r}"


def test_images_may_come_from_the_map_tile_host_and_nothing_else_may(client: TestClient) -> None:
    directives = _directives(client.get("/").headers["content-security-policy"])
    assert directives["img-src"] == "img-src 'self' data: https://tile.openstreetmap.org"
    for name in ("default-src", "script-src", "style-src", "connect-src", "font-src"):
        assert "openstreetmap" not in directives[name], directives[name]
