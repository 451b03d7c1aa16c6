"""The citizen page's own API: map settings (tiles, languages, levels) and the public warnings near a place."""

from __future__ import annotations

from datetime import timedelta

import pytest
from citysense_alert_api.settings import build_settings
from citysense_common.settings import SettingsError
from citysense_common.store import AlertRecord, Store
from fastapi.testclient import TestClient
from pydantic import ValidationError

from .conftest import NOW


def test_map_settings_default_to_openstreetmap(client: TestClient) -> None:
    body = client.get("/v1/citizen/map").json()
    assert body["tiles"] == {
        "url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "attribution": '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors',
        "max_zoom": 19,
    }
    assert body["languages"] == ["en", "de"]
    assert body["radius_km"] == {"min": 0.1, "max": 25.0, "default": 2.0}
    # The level names come from config/cap.yaml, the same words as the feed and the emails.
    assert body["severities"] == [
        {"value": "info", "names": {"en": "Notice", "de": "Hinweis"}},
        {"value": "warning", "names": {"en": "Warning", "de": "Warnung"}},
        {"value": "critical", "names": {"en": "Severe warning", "de": "Unwetterartige Warnung"}},
    ]


def test_tile_settings_are_checked_when_the_settings_are_built() -> None:
    settings = build_settings(map_tile_url="https://{s}.tiles.example.org:8443/osm/{z}/{x}/{y}.png?key=abc")
    assert settings.map_tile_origin == "https://*.tiles.example.org:8443"
    assert build_settings(map_tile_url="").map_tile_origin is None
    for bad, message in [("ftp://tiles.example.org/{z}/{x}/{y}.png", "must be an http(s) URL"),
                         ("https://tiles.example.org/{z}/{x}.png", "must contain {y}"),
                         ("https://user:secret@tiles.example.org/{z}/{x}/{y}.png", "no credentials"),
                         ("https://tiles.{z}.org/{z}/{x}/{y}.png", "only {s}. may stand before the host")]:
        with pytest.raises((SettingsError, ValidationError), match=message.replace("(", r"\(").replace(")", r"\)")):
            build_settings(map_tile_url=bad)


def _episode(store: Store, alert_id: str, station: str, lat: float, lon: float, *, severity: str = "critical",
             kind: str = "threshold", state: str = "active") -> None:
    opened = NOW - timedelta(minutes=2)
    store.upsert_alerts([AlertRecord(
        alert_id=alert_id, station_id=station, rule_id="pm25-acute-1m", kind=kind, severity=severity, state=state,
        opened_at=opened, updated_at=opened, message="PM2.5 high", last_event_id=f"ev-{alert_id}", metric="pm2_5",
        value=150.2, threshold=125.4 if severity == "critical" else 55.4, window="1m", lat=lat, lon=lon,
        resolved_at=opened if state == "resolved" else None)])


def test_warnings_near_a_place_in_english_and_german(client: TestClient, store: Store) -> None:
    _episode(store, "al-near", "st-bad", 48.86, 2.36)
    _episode(store, "al-warn", "st-near", 48.861, 2.361, severity="warning")
    _episode(store, "al-far", "st-far", 48.95, 2.36)  # 10 km north
    _episode(store, "al-over", "st-bad", 48.86, 2.36, state="resolved")
    _episode(store, "al-fault", "st-bad", 48.86, 2.36, kind="sensor_fault")  # not public: never shown
    body = client.get("/v1/citizen/warnings", params={"lat": 48.8601, "lon": 2.3598, "radius_km": 1}).json()
    assert body["language"] == "en-GB" and body["radius_km"] == 1
    # Public active alerts in the circle, most severe first: the seeded al-0 (critical, no rule of rules.yaml),
    # the episode, then the warning; not the far one, the resolved one, the sensor fault or al-2 (info threshold).
    assert [w["alert_id"] for w in body["items"]] == ["al-near", "al-0", "al-warn"]
    near = body["items"][0]
    assert near["headline"] == "Air pollution (PM2.5): Very Unhealthy at station st-bad"
    assert near["severity"] == "critical" and near["severity_name"] == "Severe warning"
    assert near["instruction"].startswith("People with heart or lung disease, older adults, children")
    assert near["area"] == "Around measuring station st-bad (radius 2 km)"
    assert 0.01 < near["distance_km"] < 0.03
    assert body["items"][1]["instruction"].startswith("Avoid exertion outdoors")  # by severity: no band known
    german = client.get("/v1/citizen/warnings",
                        params={"lat": 48.8601, "lon": 2.3598, "radius_km": 1, "language": "de"}).json()
    assert german["language"] == "de-DE"
    assert german["items"][0]["headline"] == "Luftverschmutzung (PM2,5): Sehr ungesund an der Messstation st-bad"
    assert german["items"][0]["severity_name"] == "Unwetterartige Warnung"
    assert german["items"][0]["instruction"].startswith("Menschen mit Herz- oder Lungenerkrankungen")
    wide = client.get("/v1/citizen/warnings", params={"lat": 48.8601, "lon": 2.3598, "radius_km": 25}).json()
    assert "al-far" in [w["alert_id"] for w in wide["items"]]
    assert "al-3" in [w["alert_id"] for w in wide["items"]]


def test_no_warnings_far_away(client: TestClient) -> None:
    body = client.get("/v1/citizen/warnings", params={"lat": -33.9, "lon": 151.2}).json()
    assert body["items"] == [] and body["radius_km"] == 2.0


@pytest.mark.parametrize(("params", "where"), [
    ({"lat": 91, "lon": 2.3}, "query.lat"),
    ({"lat": 48.8, "lon": -181}, "query.lon"),
    ({"lat": 48.8}, "query.lon"),
    ({"lat": 48.8, "lon": 2.3, "radius_km": 0}, "query.radius_km"),
    ({"lat": 48.8, "lon": 2.3, "radius_km": 26}, "query.radius_km"),
    ({"lat": 48.8, "lon": 2.3, "language": "fr"}, "query.language"),
    ({"lat": "north", "lon": 2.3}, "query.lat"),
])
def test_bad_places_are_problems(client: TestClient, params: dict[str, object], where: str) -> None:
    response = client.get("/v1/citizen/warnings", params=params)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert [p["name"] for p in response.json()["invalid-params"]] == [where]


def test_without_a_cap_configuration_there_are_no_warnings(client: TestClient) -> None:
    client.app.state.cap_feed = None  # type: ignore[attr-defined]
    response = client.get("/v1/citizen/warnings", params={"lat": 48.86, "lon": 2.36})
    assert response.status_code == 404
    assert "publishes no public warnings" in response.json()["detail"]
    names = client.get("/v1/citizen/map").json()["severities"][1]["names"]
    assert names == {"en": "warning", "de": "warning"}
