"""Pagination cursors are signed by the API: a forged or altered cursor is a 400 a person can act on, never a 500
or 503, and a cursor only works for the query that issued it.

The forgeries below are what a client could build from the open source: the store's own cursor format with a
matching query fingerprint and fields of the wrong type or range.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from citysense_alert_api.app import create_app
from citysense_common.store._util import encode_cursor
from citysense_common.store.sqlite import _fingerprint
from fastapi.testclient import TestClient

from .conftest import NOW


def _alerts_fp() -> str:
    return _fingerprint("alerts", "all", None, None, None, None, None)


def _b64(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


FORGED_ALERT_CURSORS = {
    "at-list": lambda: encode_cursor({"q": _alerts_fp(), "at": [1], "id": "x"}),
    "at-huge": lambda: encode_cursor({"q": _alerts_fp(), "at": 2**70, "id": "x"}),
    "id-object": lambda: encode_cursor({"q": _alerts_fp(), "at": 1, "id": {"a": 1}}),
    "not-json": lambda: base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    "json-list": lambda: _b64([1, 2, 3]),
    "signed-looking": lambda: encode_cursor({"q": _alerts_fp(), "at": 1, "id": "x"}) + ".AAAAAAAAAAAAAAAAAAAAAA",
}


def _assert_invalid_cursor(response) -> None:  # noqa: ANN001
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:citysense:problem:invalid-cursor"
    assert "start again without ?cursor=" in body["detail"], body


@pytest.mark.parametrize("name", sorted(FORGED_ALERT_CURSORS))
def test_forged_alert_cursor_is_400(client: TestClient, name: str) -> None:
    _assert_invalid_cursor(client.get("/v1/alerts", params={"state": "all", "cursor": FORGED_ALERT_CURSORS[name]()}))


def _readings_window() -> tuple[float, float]:
    end = NOW + timedelta(seconds=1)
    return (end - timedelta(hours=1)).timestamp(), end.timestamp()


FORGED_READING_CURSORS = {
    "window-overflow": lambda: _b64([1e300, 0, "x"]),
    "window-nan": lambda: _b64(["nan", "nan", "x"]),
    "window-types": lambda: _b64([[1], {"a": 1}, "x"]),
    "inner-types": lambda: _b64([*_readings_window(), encode_cursor({
        "q": _fingerprint("readings", "st-good", *(int(t * 1000) for t in _readings_window()), None),
        "ts": [1], "seq": {"a": 1}})]),
    "inner-huge": lambda: _b64([*_readings_window(), encode_cursor({
        "q": _fingerprint("readings", "st-good", *(int(t * 1000) for t in _readings_window()), None),
        "ts": 2**70, "seq": 2**70})]),
}


@pytest.mark.parametrize("name", sorted(FORGED_READING_CURSORS))
def test_forged_reading_cursor_is_400(client: TestClient, name: str) -> None:
    response = client.get("/v1/stations/st-good/readings", params={"cursor": FORGED_READING_CURSORS[name]()})
    _assert_invalid_cursor(response)


def test_altered_real_cursor_is_400(client: TestClient) -> None:
    cursor = client.get("/v1/alerts", params={"state": "all", "limit": 1}).json()["next_cursor"]
    assert cursor
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    _assert_invalid_cursor(client.get("/v1/alerts", params={"state": "all", "limit": 1, "cursor": flipped}))


def test_cursor_works_only_for_its_query(client: TestClient) -> None:
    cursor = client.get("/v1/alerts", params={"state": "all", "limit": 1}).json()["next_cursor"]
    response = client.get("/v1/alerts", params={"state": "active", "limit": 1, "cursor": cursor})
    _assert_invalid_cursor(response)
    response = client.get("/v1/stations/st-good/readings", params={"cursor": cursor})
    _assert_invalid_cursor(response)


def test_cursor_of_another_token_is_400(client: TestClient, api_settings, store) -> None:  # noqa: ANN001
    with TestClient(create_app(api_settings, "another-token-" + "y" * 24, store=store)) as other:
        cursor = other.get("/v1/alerts", params={"state": "all", "limit": 1}).json()["next_cursor"]
    _assert_invalid_cursor(client.get("/v1/alerts", params={"state": "all", "limit": 1, "cursor": cursor}))


def test_signed_cursors_page_through_everything(client: TestClient) -> None:
    ids, cursor = [], None
    while True:
        body = client.get("/v1/alerts", params={"state": "all", "limit": 1} | ({"cursor": cursor} if cursor else {}))
        assert body.status_code == 200, body.text
        ids += [a["id"] for a in body.json()["items"]]
        cursor = body.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(ids) == ["al-0", "al-1", "al-2", "al-3"]
    start = (NOW - timedelta(hours=2)).isoformat()
    end = datetime.now(UTC).isoformat()
    seen, cursor = 0, None
    while True:
        params = {"limit": 7, "from": start, "to": end} | ({"cursor": cursor} if cursor else {})
        body = client.get("/v1/stations/st-good/readings", params=params)
        assert body.status_code == 200, body.text
        seen += len(body.json()["items"])
        cursor = body.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == 25
