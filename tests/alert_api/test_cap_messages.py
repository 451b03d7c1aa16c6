"""CAP 1.2 messages built from alert records: every message type valid against the official OASIS schema, the
mapping of severities, urgency and certainty, both languages, references to the earlier message, and which alerts
are public. No broker or store: records are built here."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import xmlschema
from citysense_alert_api.cap.messages import build_message
from citysense_alert_api.cap.xml import CAP_NS, atom_feed, cap_time, cap_xml
from citysense_alert_api.settings import build_settings
from citysense_common.store import AlertRecord
from citysense_common.warnings.config import PublicWarnings

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).parent / "schemas" / "CAP-v1.2.xsd"
SCHEMA_SHA256 = "b7798ef25868b068c97b268bda02d067c7d4ba9373adc5638bf37105804ee723"
NS = {"cap": CAP_NS}
T0 = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
BASE = "https://air.example.org"
# CAP 1.2: "lat,lon radius" (WGS 84 decimal degrees, radius in km)
CIRCLE = re.compile(r"^-?\d{1,2}(\.\d+)?,-?\d{1,3}(\.\d+)? \d+(\.\d+)?$")


@functools.cache
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA))


def validate(document: bytes) -> ET.Element:
    """Validate against the OASIS CAP 1.2 schema (raises on any violation) and return the parsed root."""
    cap_schema().validate(document.decode("utf-8"))
    return ET.fromstring(document)  # noqa: S314 - a document this code built


@functools.cache
def repo_feed() -> PublicWarnings:
    feed = build_settings(cap_file=REPO / "config/cap.yaml", rules_file=REPO / "config/rules.yaml",
                          metrics_file=REPO / "config/metrics.yaml").public_warnings()
    assert feed is not None
    return feed


def record(**changes: object) -> AlertRecord:
    """An alert of the hourly PM2.5 rule at its critical 'Very Unhealthy' band, just opened."""
    base = AlertRecord(
        alert_id="5d0e8d3e-6f51-5b0b-9c55-2c1b8f3f0a11", station_id="st-042", rule_id="pm25-epa-aqi-1h",
        kind="threshold", severity="critical", state="active", opened_at=T0, updated_at=T0,
        message="PM2.5 1-hour mean 140.3 µg/m³ exceeds 125.4 µg/m³ (US EPA AQI: Very Unhealthy)",
        last_event_id="ev-open", metric="pm2_5", value=140.3, threshold=125.4, window="1h", lat=48.137154,
        lon=11.576124)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def message_xml(rec: AlertRecord, now: datetime | None = None) -> ET.Element:
    message = build_message(rec, repo_feed(), now or rec.updated_at + timedelta(minutes=1), BASE)
    assert message is not None
    return validate(cap_xml(message))


def text(root: ET.Element, path: str) -> str:
    found = root.findtext(path, namespaces=NS)
    assert found is not None, path
    return found


def infos(root: ET.Element) -> dict[str, ET.Element]:
    return {text(info, "cap:language"): info for info in root.findall("cap:info", NS)}


def test_the_vendored_schema_is_the_one_described() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert 'targetNamespace = "urn:oasis:names:tc:emergency:cap:1.2"' in SCHEMA.read_text()


def test_the_schema_rejects_what_cap_forbids() -> None:
    """The validation is real: a UTC time written with "Z" and an unknown msgType are refused."""
    good = cap_xml(build_message(record(), repo_feed(), T0, BASE))  # type: ignore[arg-type]
    validate(good)
    for bad in (good.replace(b"-00:00</sent>", b"Z</sent>", 1), good.replace(b">Alert<", b">Warning<", 1)):
        with pytest.raises(xmlschema.XMLSchemaValidationError):
            validate(bad)


def test_a_new_alert_is_an_alert_message_in_english_and_german() -> None:
    root = message_xml(record())
    assert text(root, "cap:msgType") == "Alert"
    assert root.find("cap:references", NS) is None
    assert text(root, "cap:sender") == "citysense@alerts.example.org"
    assert text(root, "cap:sent") == "2026-03-01T12:00:00-00:00"
    assert text(root, "cap:scope") == "Public" and text(root, "cap:status") == "Actual"
    by_language = infos(root)
    assert list(by_language) == ["en-GB", "de-DE"]
    for info in by_language.values():
        assert [c.text for c in info.findall("cap:category", NS)] == ["Env"]
        assert text(info, "cap:urgency") == "Immediate"
        assert text(info, "cap:severity") == "Severe"  # critical
        assert text(info, "cap:certainty") == "Observed"
        assert text(info, "cap:responseType") == "Avoid"
        assert text(info, "cap:onset") == "2026-03-01T12:00:00-00:00"
        assert text(info, "cap:expires") == "2026-03-01T18:00:00-00:00"  # valid_hours: 6
        area = info.find("cap:area", NS)
        assert area is not None
        circle = text(area, "cap:circle")
        assert CIRCLE.match(circle) and circle == "48.137154,11.576124 2", circle
        assert "st-042" in text(area, "cap:areaDesc")
    en, de = by_language["en-GB"], by_language["de-DE"]
    assert text(en, "cap:event") == "Air pollution (PM2.5)"
    assert text(en, "cap:headline") == "Air pollution (PM2.5): Very Unhealthy at station st-042"
    assert "140.3 µg/m³" in text(en, "cap:description") and "US EPA AQI" in text(en, "cap:description")
    assert "avoid all physical activity outdoors" in text(en, "cap:instruction")
    assert text(de, "cap:event") == "Luftverschmutzung (PM2,5)"
    assert text(de, "cap:headline") == "Luftverschmutzung (PM2,5): Sehr ungesund an der Messstation st-042"
    assert "140,3 µg/m³" in text(de, "cap:description")
    assert "jede körperliche Aktivität im Freien vermeiden" in text(de, "cap:instruction")


@pytest.mark.parametrize(("severity", "threshold", "expected"), [
    ("warning", 55.4, "Moderate"), ("critical", 125.4, "Severe"), ("critical", 225.4, "Extreme"),
])
def test_cap_severity_follows_the_rules_band(severity: str, threshold: float, expected: str) -> None:
    root = message_xml(record(severity=severity, threshold=threshold))
    assert {text(i, "cap:severity") for i in root.findall("cap:info", NS)} == {expected}


def test_advice_follows_the_air_quality_band() -> None:
    unhealthy = infos(message_xml(record(severity="warning", threshold=55.4)))
    hazardous = infos(message_xml(record(severity="critical", threshold=225.4)))
    assert text(unhealthy["en-GB"], "cap:instruction") != text(hazardous["en-GB"], "cap:instruction")
    assert "stay indoors" in text(hazardous["en-GB"], "cap:instruction")
    assert "Innenräumen" in text(hazardous["de-DE"], "cap:instruction")
    assert text(hazardous["de-DE"], "cap:headline").startswith("Luftverschmutzung (PM2,5): Gefährlich")


def test_an_update_references_the_alert_message() -> None:
    opened = record()
    alert = build_message(opened, repo_feed(), T0, BASE)
    assert alert is not None and alert.msg_type == "Alert"
    changed = record(severity="critical", threshold=225.4, value=230.0, last_event_id="ev-2",
                     updated_at=T0 + timedelta(minutes=7))
    root = message_xml(changed)
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:sent") == "2026-03-01T12:07:00-00:00"
    assert text(root, "cap:references") == f"{alert.sender},{alert.identifier},{cap_time(alert.sent)}"
    assert text(root, "cap:identifier") != alert.identifier
    assert text(root, "cap:incidents") == opened.alert_id


def test_an_unchanged_alert_is_reissued_before_its_message_expires() -> None:
    rec = record()
    now = T0 + timedelta(hours=7)  # valid_hours 6: re-issued every 3 h, at 15:00 and 18:00
    message = build_message(rec, repo_feed(), now, BASE)
    assert message is not None and message.current(now)
    root = validate(cap_xml(message))
    assert text(root, "cap:msgType") == "Update"
    assert text(root, "cap:sent") == "2026-03-01T18:00:00-00:00"
    refs = text(root, "cap:references").split()
    alert = build_message(rec, repo_feed(), T0, BASE)
    previous = build_message(rec, repo_feed(), T0 + timedelta(hours=4), BASE)
    assert alert is not None and previous is not None
    assert refs == [f"{alert.sender},{alert.identifier},2026-03-01T12:00:00-00:00",
                    f"{previous.sender},{previous.identifier},2026-03-01T15:00:00-00:00"]
    # the same instant gives the same message: ids and times come from the record alone
    assert cap_xml(message) == cap_xml(build_message(rec, repo_feed(), now, BASE))  # type: ignore[arg-type]


def test_a_resolved_alert_cancels_the_warning_with_an_all_clear() -> None:
    opened = build_message(record(), repo_feed(), T0, BASE)
    resolved = record(state="resolved", severity="warning", threshold=55.4, value=28.0, last_event_id="ev-3",
                      updated_at=T0 + timedelta(minutes=40), resolved_at=T0 + timedelta(minutes=40),
                      message="PM2.5 1-hour mean 28.0 µg/m³ is back to 30 µg/m³ or below; alert resolved")
    root = message_xml(resolved)
    assert opened is not None
    assert text(root, "cap:msgType") == "Cancel"  # the warning no longer applies; its info says all clear
    assert text(root, "cap:references") == f"{opened.sender},{opened.identifier},{cap_time(opened.sent)}"
    for info in root.findall("cap:info", NS):
        assert text(info, "cap:responseType") == "AllClear"
        assert text(info, "cap:urgency") == "Past"
        assert text(info, "cap:expires") == "2026-03-01T18:40:00-00:00"  # all_clear_hours: 6
        assert info.find("cap:onset", NS) is None
    by_language = infos(root)
    assert text(by_language["en-GB"], "cap:headline").startswith("All clear:")
    assert text(by_language["de-DE"], "cap:headline").startswith("Entwarnung:")



def test_the_all_clear_can_be_an_update_instead() -> None:
    """``all_clear_msg_type: Update``: the all-clear as Google Public Alerts prefers it; a withdrawal stays a Cancel."""
    feed = repo_feed()
    feed = dataclasses.replace(feed, config=feed.config.model_copy(update={"all_clear_msg_type": "Update"}))
    resolved = record(state="resolved", severity="warning", threshold=55.4, value=28.0, last_event_id="ev-3",
                      updated_at=T0 + timedelta(minutes=40), resolved_at=T0 + timedelta(minutes=40))
    message = build_message(resolved, feed, T0 + timedelta(minutes=41), BASE)
    assert message is not None and message.msg_type == "Update"
    root = validate(cap_xml(message))
    assert {text(info, "cap:responseType") for info in root.findall("cap:info", NS)} == {"AllClear"}
    forecast = record(kind="forecast", severity="info", state="resolved", last_event_id="ev-4",
                      updated_at=T0 + timedelta(minutes=40), resolved_at=T0 + timedelta(minutes=40))
    withdrawn = build_message(forecast, feed, T0 + timedelta(minutes=41), BASE)
    assert withdrawn is not None and withdrawn.msg_type == "Cancel"

def test_a_resolved_forecast_is_a_cancel() -> None:
    forecast = record(kind="forecast", rule_id="pm25-who-24h.forecast", severity="info", threshold=15.0,
                      value=12.0, window="24h")
    active = message_xml(forecast)
    assert text(active, "cap:msgType") == "Alert"
    assert {text(i, "cap:urgency") for i in active.findall("cap:info", NS)} == {"Expected"}
    assert {text(i, "cap:certainty") for i in active.findall("cap:info", NS)} == {"Likely"}
    assert {text(i, "cap:responseType") for i in active.findall("cap:info", NS)} == {"Prepare"}
    withdrawn = message_xml(dataclasses.replace(forecast, state="resolved", last_event_id="ev-f2",
                                                updated_at=T0 + timedelta(hours=1)))
    assert text(withdrawn, "cap:msgType") == "Cancel"
    assert text(withdrawn, "cap:references").split(",")[1] == text(active, "cap:identifier")
    assert {text(i, "cap:urgency") for i in withdrawn.findall("cap:info", NS)} == {"Past"}


def test_an_alert_lowered_below_the_public_level_is_cancelled() -> None:
    # The hourly rule's lowest band is info, which is not public; a warning lowered to it withdraws the warning.
    lowered = record(severity="info", threshold=35.4, value=40.0, last_event_id="ev-4",
                     updated_at=T0 + timedelta(minutes=30))
    root = message_xml(lowered)
    assert text(root, "cap:msgType") == "Cancel"
    assert {text(i, "cap:urgency") for i in root.findall("cap:info", NS)} == {"Past"}
    # Opened at info and never changed: it never was public.
    assert build_message(record(severity="info", threshold=35.4), repo_feed(), T0, BASE) is None


@pytest.mark.parametrize("kind", ["sensor_fault", "station_offline", "outlier"])
@pytest.mark.parametrize("state", ["active", "resolved"])
def test_network_alerts_are_never_public(kind: str, state: str) -> None:
    for severity in ("info", "warning", "critical"):
        rec = record(kind=kind, state=state, severity=severity, rule_id="station-offline",
                     updated_at=T0 + timedelta(minutes=5))
        assert build_message(rec, repo_feed(), T0 + timedelta(minutes=6), BASE) is None


def test_an_alert_without_a_known_rule_or_location_is_still_valid() -> None:
    rec = record(rule_id="custom-rule", lat=None, lon=None, window=None, metric="so2")
    root = message_xml(rec)
    for info in root.findall("cap:info", NS):
        area = info.find("cap:area", NS)
        assert area is not None and area.find("cap:circle", NS) is None
        assert rec.message in text(info, "cap:description")
        assert text(info, "cap:severity") == "Severe"


def test_the_atom_feed_names_each_message() -> None:
    messages = [m for m in (build_message(record(alert_id=f"a{i}", updated_at=T0 + timedelta(minutes=i)),
                                          repo_feed(), T0 + timedelta(minutes=10), BASE) for i in range(3)) if m]
    feed = atom_feed(messages, sender="s@x", title="t", author="a", base_url=BASE, now=T0 + timedelta(minutes=10))
    root = ET.fromstring(feed)  # noqa: S314 - a document this code built
    atom = {"a": "http://www.w3.org/2005/Atom"}
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    entries = root.findall("a:entry", atom)
    assert [e.findtext("a:id", namespaces=atom) for e in entries] == [f"urn:uuid:{m.identifier}" for m in messages]
    link = entries[0].find("a:link", atom)
    assert link is not None and link.get("href") == f"{BASE}/v1/cap/alerts/a0.xml"
    assert link.get("type") == "application/cap+xml"
