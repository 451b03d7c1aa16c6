"""Read endpoints over the real SQLite store: stations, air quality, readings pagination, alerts and filters."""

from __future__ import annotations

import pytest
from citysense_alert_api.air_quality import pm25_category

PROBLEM = "application/problem+json"


def test_stations_list_status_and_air_quality(client) -> None:
    body = client.get("/v1/stations").json()
    by_id = {s["id"]: s for s in body["items"]}
    assert set(by_id) == {"st-good", "st-bad", "st-old", "st-nopm"}
    assert by_id["st-good"]["status"] == "active"
    assert by_id["st-good"]["air_quality"]["category"] == "good"
    assert by_id["st-bad"]["air_quality"]["category"] == "very_unhealthy"
    assert by_id["st-bad"]["location"] == {"lat": 48.86, "lon": 2.36}
    assert by_id["st-old"]["status"] == "offline"  # silent for 2 h
    assert by_id["st-nopm"]["air_quality"] is None and by_id["st-nopm"]["location"] is None


def test_station_one_and_missing(client) -> None:
    assert client.get("/v1/stations/st-good").json()["latest"]["pm2_5"] == 4.0
    r = client.get("/v1/stations/nope")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["detail"] == "No station with id 'nope' has sent a reading."


def test_readings_cursor_pagination_walks_everything_once(client) -> None:
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10, "metric": "pm2_5"} | ({"cursor": cursor} if cursor else {})
        body = client.get("/v1/stations/st-good/readings", params=params).json()
        seen += [r["seq"] for r in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 25


def test_invalid_cursor_is_400(client) -> None:
    r = client.get("/v1/stations/st-good/readings", params={"cursor": "bm90LWEtY3Vyc29y"})
    assert r.status_code == 400 and r.headers["content-type"] == PROBLEM
    assert "cursor" in r.json()["detail"]


def test_alerts_filters_and_pagination(client) -> None:
    active = client.get("/v1/alerts").json()["items"]
    assert {a["id"] for a in active} == {"al-0", "al-2", "al-3"}
    assert [a["id"] for a in client.get("/v1/alerts", params={"state": "resolved"}).json()["items"]] == ["al-1"]
    assert len(client.get("/v1/alerts", params={"state": "all"}).json()["items"]) == 4
    crit = client.get("/v1/alerts", params={"severity": "critical"}).json()["items"]
    assert [a["id"] for a in crit] == ["al-0"]
    by_station = client.get("/v1/alerts", params={"station_id": "st-good"}).json()["items"]
    assert [a["id"] for a in by_station] == ["al-2"]
    boxed = client.get("/v1/alerts", params={"bbox": "2.34,48.84,2.37,48.865"}).json()["items"]
    assert {a["id"] for a in boxed} == {"al-0", "al-2"}
    page1 = client.get("/v1/alerts", params={"state": "all", "limit": 3}).json()
    page2 = client.get("/v1/alerts", params={"state": "all", "limit": 3, "cursor": page1["next_cursor"]}).json()
    assert len(page1["items"]) == 3 and len(page2["items"]) == 1 and page2["next_cursor"] is None
    assert {a["id"] for a in page1["items"] + page2["items"]} == {"al-0", "al-1", "al-2", "al-3"}


def test_alert_one_and_missing(client) -> None:
    assert client.get("/v1/alerts/al-1").json()["resolved_at"] is not None
    r = client.get("/v1/alerts/al-zzz")
    assert r.status_code == 404 and r.json()["title"] == "Alert not found"


def test_epa_bands() -> None:
    cases = {0: "good", 9.0: "good", 9.05: "good", 9.1: "moderate", 35.4: "moderate", 35.5: "unhealthy_sensitive",
             55.5: "unhealthy", 125.5: "very_unhealthy", 225.4: "very_unhealthy", 225.5: "hazardous", 900: "hazardous"}
    for value, key in cases.items():
        assert pm25_category(value).key == key, value
    assert pm25_category(None) is None and pm25_category(-1) is None


def test_ops_endpoints(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"store": "ok", "broker": "ok"}
    assert "citysense_api_requests_total" in client.get("/metrics").text
    schema = client.get("/openapi.json").json()
    assert "/v1/alerts/stream" in schema["paths"]
    assert "ProblemDetails" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and "citysense" in page.text
    assert client.get("/static/app.js").status_code == 200


def test_unknown_route_and_method_are_problems(client) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    r = client.put("/v1/alerts")
    assert r.status_code == 405 and r.json()["detail"] == "PUT is not supported on /v1/alerts."


@pytest.mark.parametrize("to", ["0001-01-01T00:00:00Z", "0001-01-01T00:30:00+00:00"])
def test_readings_up_to_the_first_hour_of_year_one_are_an_empty_page_not_an_error(client, to: str) -> None:
    # The default start is an hour before `to`; before year 1 it cannot be represented (found by schemathesis: 500).
    r = client.get("/v1/stations/st-good/readings", params={"to": to})
    assert r.status_code == 200, r.text
    assert r.json()["items"] == [] and r.json()["next_cursor"] is None


def test_readings_from_not_before_to_is_still_rejected(client) -> None:
    r = client.get("/v1/stations/st-good/readings", params={"from": "2026-01-01T00:00:00Z",
                                                               "to": "2026-01-01T00:00:00Z"})
    assert r.status_code == 422 and "earlier than query.to" in r.json()["detail"]
