"""The CAP 1.2 routes: the Atom feed lists the current public alerts, each entry links to a CAP message valid
against the OASIS schema, and alerts that are not public answer 404 exactly like missing ones."""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from citysense_common.store import AlertRecord, Store
from fastapi.testclient import TestClient

from .test_cap_messages import NS, infos, text, validate

ATOM = {"a": "http://www.w3.org/2005/Atom"}
NOW = datetime.now(UTC).replace(microsecond=0)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
# public: al-0 (critical) and al-3 (warning) active, al-1 resolved 15 min ago (conftest.seed), and these
PUBLIC = {"cap-open", "cap-update", "cap-resolved", "al-0", "al-1", "al-3"}
NOT_PUBLIC = ["cap-fault", "cap-offline", "cap-info", "al-2"]


def _alert(alert_id: str, *, kind: str = "threshold", severity: str = "warning", threshold: float = 55.4,
           opened: timedelta, updated: timedelta | None = None, resolved: bool = False) -> AlertRecord:
    opened_at = NOW - opened
    updated_at = NOW - updated if updated is not None else opened_at
    return AlertRecord(
        alert_id=alert_id, station_id="st-bad", rule_id="pm25-epa-aqi-1h", kind=kind, severity=severity,
        state="resolved" if resolved else "active", opened_at=opened_at, updated_at=updated_at,
        message=f"{alert_id} message", last_event_id=f"{alert_id}-ev", metric="pm2_5", value=150.2,
        threshold=threshold, window="1h", lat=48.86, lon=2.36, resolved_at=updated_at if resolved else None)


@pytest.fixture
def cap_store(store: Store) -> Store:
    store.upsert_alerts([
        _alert("cap-open", severity="critical", threshold=225.4, opened=timedelta(minutes=5)),
        _alert("cap-update", opened=timedelta(minutes=30), updated=timedelta(minutes=10)),
        _alert("cap-resolved", opened=timedelta(minutes=50), updated=timedelta(minutes=15), resolved=True),
        _alert("cap-old", opened=timedelta(days=2, hours=1), updated=timedelta(days=2), resolved=True),
        _alert("cap-fault", kind="sensor_fault", opened=timedelta(minutes=3)),
        _alert("cap-offline", kind="station_offline", severity="critical", opened=timedelta(minutes=4)),
        _alert("cap-info", severity="info", threshold=35.4, opened=timedelta(minutes=6)),
    ])
    return store


def _feed(client: TestClient) -> ET.Element:
    response = client.get("/v1/cap/alerts.atom")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/atom+xml")
    return ET.fromstring(response.content)  # noqa: S314 - the API's own document


def _entries(feed: ET.Element) -> dict[str, ET.Element]:
    """Entries by the alert id in their CAP link."""
    out = {}
    for entry in feed.findall("a:entry", ATOM):
        link = entry.find("a:link[@rel='alternate']", ATOM)
        assert link is not None and link.get("type") == "application/cap+xml"
        match = re.fullmatch(r"http://testserver/v1/cap/alerts/(.+)\.xml", link.get("href", ""))
        assert match, link.get("href")
        out[match.group(1)] = entry
    return out


def _message(client: TestClient, alert_id: str) -> ET.Element:
    response = client.get(f"/v1/cap/alerts/{alert_id}.xml")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/cap+xml"
    assert response.headers["x-content-type-options"] == "nosniff"
    return validate(response.content)


def test_the_feed_lists_the_current_public_alerts(client: TestClient, cap_store: Store) -> None:
    response = client.get("/v1/cap/alerts.atom")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    feed = _feed(client)
    assert feed.tag == "{http://www.w3.org/2005/Atom}feed"
    assert (feed.findtext("a:id", namespaces=ATOM) or "").startswith("urn:uuid:")
    assert feed.findtext("a:title", namespaces=ATOM) == "Environmental warnings (air quality, heat)"
    assert RFC3339.match(feed.findtext("a:updated", namespaces=ATOM) or "")
    assert feed.findtext("a:author/a:name", namespaces=ATOM)
    self_link = feed.find("a:link[@rel='self']", ATOM)
    assert self_link is not None and self_link.get("href") == "http://testserver/v1/cap/alerts.atom"
    entries = _entries(feed)
    assert set(entries) == PUBLIC
    updated = []
    for entry in entries.values():
        assert (entry.findtext("a:id", namespaces=ATOM) or "").startswith("urn:uuid:")
        assert entry.findtext("a:title", namespaces=ATOM)
        assert RFC3339.match(entry.findtext("a:updated", namespaces=ATOM) or "")
        updated.append(entry.findtext("a:updated", namespaces=ATOM))
    assert updated == sorted(updated, reverse=True)  # newest first


def test_each_entry_links_to_a_valid_cap_message(client: TestClient, cap_store: Store) -> None:
    entries = _entries(_feed(client))
    for alert_id, entry in entries.items():
        root = _message(client, alert_id)
        assert entry.findtext("a:id", namespaces=ATOM) == f"urn:uuid:{text(root, 'cap:identifier')}"
        assert set(infos(root)) == {"en-GB", "de-DE"}
        assert entry.findtext("a:title", namespaces=ATOM) == text(infos(root)["en-GB"], "cap:headline")
    opened = _message(client, "cap-open")
    assert text(opened, "cap:msgType") == "Alert"
    assert {text(i, "cap:severity") for i in opened.findall("cap:info", NS)} == {"Extreme"}  # Hazardous band
    assert re.fullmatch(r"48\.86,2\.36 2", text(infos(opened)["en-GB"], "cap:area/cap:circle"))
    updated = _message(client, "cap-update")
    assert text(updated, "cap:msgType") == "Update"
    assert text(updated, "cap:references").startswith("citysense@alerts.example.org,")
    resolved = _message(client, "cap-resolved")
    assert text(resolved, "cap:msgType") == "Cancel"
    assert {text(i, "cap:responseType") for i in resolved.findall("cap:info", NS)} == {"AllClear"}


@pytest.mark.parametrize("alert_id", [*NOT_PUBLIC, "no-such-alert"])
def test_alerts_that_are_not_public_answer_404_like_missing_ones(client: TestClient, cap_store: Store,
                                                                 alert_id: str) -> None:
    response = client.get(f"/v1/cap/alerts/{alert_id}.xml")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert body["title"] == "Alert not found"
    assert body["detail"] == f"No public alert with id {alert_id!r}."
    assert alert_id.encode() not in _feed_bytes(client)


def _feed_bytes(client: TestClient) -> bytes:
    return client.get("/v1/cap/alerts.atom").content


def test_an_old_all_clear_leaves_the_feed_but_keeps_its_message(client: TestClient, cap_store: Store) -> None:
    assert "cap-old" not in _entries(_feed(client))
    root = _message(client, "cap-old")
    assert text(root, "cap:msgType") == "Cancel"


def test_a_change_of_an_alert_is_a_new_message_referencing_the_first(client: TestClient, cap_store: Store) -> None:
    first = _message(client, "cap-open")
    before = _entries(_feed(client))["cap-open"].findtext("a:id", namespaces=ATOM)
    changed = _alert("cap-open", severity="critical", threshold=125.4, opened=timedelta(minutes=5),
                     updated=timedelta(minutes=1))
    cap_store.upsert_alerts([dataclasses.replace(changed, last_event_id="cap-open-ev2")])
    client.app.state.alert_pages.invalidate()  # what an alert event on the stream does  # type: ignore[attr-defined]
    after = _entries(_feed(client))["cap-open"].findtext("a:id", namespaces=ATOM)
    assert after != before
    update = _message(client, "cap-open")
    assert text(update, "cap:msgType") == "Update"
    assert text(update, "cap:references") == (
        f"{text(first, 'cap:sender')},{text(first, 'cap:identifier')},{text(first, 'cap:sent')}")


def test_unchanged_documents_answer_304(client: TestClient, cap_store: Store) -> None:
    for path in ("/v1/cap/alerts.atom", "/v1/cap/alerts/cap-open.xml"):
        first = client.get(path)
        etag = first.headers["etag"]
        assert first.headers["cache-control"] == "no-cache"
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag and not again.content


def test_the_routes_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "application/atom+xml" in paths["/v1/cap/alerts.atom"]["get"]["responses"]["200"]["content"]
    assert "application/cap+xml" in paths["/v1/cap/alerts/{alert_id}.xml"]["get"]["responses"]["200"]["content"]
