"""Subscriptions: auth, secret shown once, CRUD, SSRF refusals at creation, delivery log."""

from __future__ import annotations

import pytest
from citysense_alert_api.app import create_app
from fastapi.testclient import TestClient

from .conftest import AUTH, TOKEN

PROBLEM = "application/problem+json"
GOOD = {"url": "http://127.0.0.1:9/hook", "description": "mine", "filters": {"station_ids": ["st-bad"]}}


@pytest.mark.parametrize(("method", "path"), [
    ("post", "/v1/subscriptions"), ("get", "/v1/subscriptions"),
    ("get", "/v1/subscriptions/sub_000000000000000000000000"),
    ("patch", "/v1/subscriptions/sub_000000000000000000000000"),
    ("delete", "/v1/subscriptions/sub_000000000000000000000000"),
    ("post", "/v1/subscriptions/sub_000000000000000000000000/test"),
    ("get", "/v1/subscriptions/sub_000000000000000000000000/deliveries"),
])
def test_writes_need_the_token(client, method: str, path: str) -> None:
    kwargs = {"json": GOOD} if method in ("post", "patch") else {}
    r = client.request(method, path, **kwargs)
    assert r.status_code == 401 and r.headers["content-type"] == PROBLEM
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in r.json()["detail"]
    r = client.request(method, path, headers={"Authorization": "Bearer wrong-token"}, **kwargs)
    assert r.status_code == 403 and r.json()["detail"] == "The bearer token is not valid for this API."


def test_create_shows_secret_once_then_crud(client) -> None:
    r = client.post("/v1/subscriptions", json=GOOD, headers=AUTH)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["secret"].startswith("whsec_")
    assert r.headers["location"] == f"/v1/subscriptions/{created['id']}"
    assert r.headers["cache-control"] == "no-store"
    sub_id = created["id"]
    one = client.get(f"/v1/subscriptions/{sub_id}", headers=AUTH).json()
    assert "secret" not in one and one["filters"] == {"station_ids": ["st-bad"]} and one["status"] == "active"
    listed = client.get("/v1/subscriptions", headers=AUTH).json()["items"]
    assert [s["id"] for s in listed] == [sub_id] and "secret" not in listed[0]
    assert created["secret"] not in client.get("/v1/subscriptions", headers=AUTH).text
    paused = client.patch(f"/v1/subscriptions/{sub_id}", json={"status": "paused"}, headers=AUTH).json()
    assert paused["status"] == "paused" and paused["filters"] == {"station_ids": ["st-bad"]}
    r = client.post(f"/v1/subscriptions/{sub_id}/test", headers=AUTH)
    assert r.status_code == 409
    refiltered = client.patch(f"/v1/subscriptions/{sub_id}", headers=AUTH,
                              json={"status": "active", "filters": {"min_severity": "critical"}}).json()
    assert refiltered["filters"] == {"min_severity": "critical"} and refiltered["status"] == "active"
    assert client.get(f"/v1/subscriptions/{sub_id}/deliveries", headers=AUTH).json() == {"items": [],
                                                                                          "next_cursor": None}
    assert client.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH).status_code == 204
    r = client.get(f"/v1/subscriptions/{sub_id}", headers=AUTH)
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert client.delete(f"/v1/subscriptions/{sub_id}", headers=AUTH).status_code == 404


@pytest.mark.parametrize(("url", "words"), [
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
    ("http://10.0.0.5/hook", "private-network"),
    ("http://0xa9fea9fe/", "cloud metadata"),
    ("http://[fd00::1]/", "unique local"),
    ("http://100.64.1.1/", "carrier-grade NAT"),
    ("http://[::1]:8080/", "loopback"),
])
def test_ssrf_refused_at_subscription_time(client, url: str, words: str) -> None:
    r = client.post("/v1/subscriptions", json={**GOOD, "url": url}, headers=AUTH)
    assert r.status_code == 422, r.text
    body = r.json()
    assert r.headers["content-type"] == PROBLEM and body["title"] == "Webhook URL refused"
    assert "webhooks must go to a public address" in body["detail"] and words in body["detail"]
    assert body["invalid-params"][0]["name"] == "body.url"


def test_production_refuses_loopback_and_patch_rechecks(api_settings, store) -> None:
    prod = api_settings.model_copy(update={"env": "production"})
    with TestClient(create_app(prod, TOKEN, store=store)) as c:
        r = c.post("/v1/subscriptions", json=GOOD, headers=AUTH)
        assert r.status_code == 422 and "loopback" in r.json()["detail"]
    with TestClient(create_app(api_settings, TOKEN, store=store)) as c:
        sub_id = c.post("/v1/subscriptions", json=GOOD, headers=AUTH).json()["id"]
        r = c.patch(f"/v1/subscriptions/{sub_id}", json={"url": "http://192.168.0.1/"}, headers=AUTH)
        assert r.status_code == 422 and "private-network" in r.json()["detail"]


# (body, where, what the message must say) — every validation message a subscriber can meet.
INVALID = [
    ({"description": "x"}, "body.url", "is required"),
    ({"url": "not a url"}, "body.url", "url"),
    ({"url": "ftp://example.com/"}, "body.url", "scheme"),
    ({"url": "http://example.com/" + "a" * 2100}, "body.url", "at most 2048 characters"),
    ({**GOOD, "colour": "red"}, "body.colour", "is not a known field"),
    ({**GOOD, "description": "d" * 501}, "body.description", "at most 500 characters"),
    ({**GOOD, "filters": {"station_ids": []}}, "body.filters.station_ids", "at least 1 item"),
    ({**GOOD, "filters": {"station_ids": ["bad id!"]}}, "body.filters.station_ids.0", "string should match"),
    ({**GOOD, "filters": {"bbox": [3, 48, 2, 49]}}, "body.filters", "min <= max"),
    ({**GOOD, "filters": {"bbox": [200, 48, 2, 49]}}, "body.filters", "within -180..180"),
    ({**GOOD, "filters": {"bbox": [1, 2, 3]}}, "body.filters.bbox", "at least 4 items"),
    ({**GOOD, "filters": {"point": {"lat": 1, "lon": 2}}}, "body.filters", "point and radius_m go together"),
    ({**GOOD, "filters": {"radius_m": 10}}, "body.filters", "point and radius_m go together"),
    ({**GOOD, "filters": {"point": {"lat": 91, "lon": 2}, "radius_m": 5}}, "body.filters.point.lat", "less than"),
    ({**GOOD, "filters": {"point": {"lat": 1, "lon": 2}, "radius_m": -5}}, "body.filters.radius_m", "greater than"),
    ({**GOOD, "filters": {"bbox": [1, 2, 3, 4], "point": {"lat": 3, "lon": 2}, "radius_m": 5}}, "body.filters",
     "either bbox or point"),
    ({**GOOD, "filters": {"kinds": ["earthquake"]}}, "body.filters.kinds.0", "must be one of"),
    ({**GOOD, "filters": {"min_severity": "urgent"}}, "body.filters.min_severity", "must be one of"),
    ({**GOOD, "filters": {"states": ["closed"]}}, "body.filters.states.0", "must be one of"),
    ({**GOOD, "filters": {"metrics": ["PM25"]}}, "body.filters.metrics.0", "string should match"),
    ({**GOOD, "filters": {"sensor": "x"}}, "body.filters.sensor", "is not a known field"),
]


@pytest.mark.parametrize(("body", "where", "says"), INVALID)
def test_subscription_validation_messages(client, body: dict, where: str, says: str) -> None:
    r = client.post("/v1/subscriptions", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert r.headers["content-type"] == PROBLEM and problem["title"] == "Invalid request"
    params = {p["name"]: p["reason"] for p in problem["invalid-params"]}
    assert where in params, params
    assert says.lower() in params[where].lower(), params[where]
    assert where in problem["detail"]


def test_malformed_json_body(client) -> None:
    r = client.post("/v1/subscriptions", content=b"{not json", headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]


QUERY_INVALID = [
    ("/v1/alerts?state=open", "query.state", "must be one of"),
    ("/v1/alerts?severity=urgent", "query.severity", "must be one of"),
    ("/v1/alerts?kind=quake", "query.kind", "must be one of"),
    ("/v1/alerts?limit=0", "query.limit", "greater than or equal to 1"),
    ("/v1/alerts?limit=5000", "query.limit", "less than or equal to 1000"),
    ("/v1/alerts?limit=ten", "query.limit", "valid integer"),
    ("/v1/alerts?station_id=bad%20id", "query.station_id", "string should match"),
    ("/v1/alerts?bbox=1,2,3", "query.bbox", "four numbers"),
    ("/v1/alerts?bbox=a,b,c,d", "query.bbox", "four numbers"),
    ("/v1/alerts?bbox=3,2,1,4", "query.bbox", "minimum <= its maximum"),
    ("/v1/alerts?bbox=1,95,3,96", "query.bbox", "latitudes must be between -90 and 90"),
    ("/v1/alerts?bbox=-200,1,3,4", "query.bbox", "longitudes must be between -180 and 180"),
    ("/v1/alerts/stream?state=nope", "query.state", "must be one of"),
    ("/v1/stations/st-good/readings?from=yesterday", "query.from", "valid datetime"),
    ("/v1/stations/st-good/readings?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "query.from",
     "earlier than query.to"),
    ("/v1/stations/st-good/readings?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "query.from",
     "longer than 31 days"),
    ("/v1/stations/st-good/readings?from=2026-01-01T00:00:00", "query.from", "needs a time zone"),
    ("/v1/stations/st-good/readings?metric=PM", "query.metric", "string should match"),
    ("/v1/stations/st-good/readings?limit=1001", "query.limit", "less than or equal to 1000"),
    ("/v1/stations/bad%20id", "path.station_id", "string should match"),
]


@pytest.mark.parametrize(("url", "where", "says"), QUERY_INVALID)
def test_query_validation_messages(client, url: str, where: str, says: str) -> None:
    r = client.get(url)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    params = {p["name"]: p["reason"] for p in r.json()["invalid-params"]}
    assert where in params, params
    assert says.lower() in params[where].lower(), params[where]


def test_production_refuses_a_port_the_notifier_may_not_reach(api_settings, store) -> None:
    """The notifier delivers only to CITYSENSE_WEBHOOK_PORTS (80 and 443 in production, as the NetworkPolicy lets
    out); a subscription elsewhere is refused when it is made, not dead-lettered at every alert."""
    prod = api_settings.model_copy(update={"env": "production"})
    with TestClient(create_app(prod, TOKEN, store=store)) as c:
        r = c.post("/v1/subscriptions", json={**GOOD, "url": "http://93.184.215.14:8080/hook"}, headers=AUTH)
        assert r.status_code == 422, r.text
        assert "8080" in r.json()["detail"]
        assert c.post("/v1/subscriptions", json={**GOOD, "url": "https://93.184.215.14/hook"},
                      headers=AUTH).status_code == 201
