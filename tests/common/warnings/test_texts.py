"""The words of a public warning in one language, shared by the CAP feed and the notifier's emails: the band of
the rule, the health advice for it, both languages with their number formats, and which states are public."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.store import AlertRecord
from citysense_common.warnings.config import PublicWarnings, load_warnings
from citysense_common.warnings.texts import HEADLINE_MAX, phase_of, warning_text

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@functools.cache
def warnings() -> PublicWarnings:
    loaded = load_warnings(REPO / "config/cap.yaml", required=True, rules_path=REPO / "config/rules.yaml",
                           metrics_file=REPO / "config/metrics.yaml")
    assert loaded is not None
    return loaded


def record(**changes: object) -> AlertRecord:
    base = AlertRecord(
        alert_id="a1", station_id="st-042", rule_id="pm25-epa-aqi-1h", kind="threshold", severity="critical",
        state="active", opened_at=T0, updated_at=T0, message="PM2.5 1-hour mean 140.3 µg/m³ exceeds 125.4 µg/m³",
        last_event_id="ev-open", metric="pm2_5", value=140.3, threshold=125.4, window="1h", lat=48.1, lon=11.5)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_an_active_alert_names_its_band_and_advice_in_both_languages() -> None:
    en = warning_text(record(), warnings(), "active", "en-GB")
    de = warning_text(record(), warnings(), "active", "de-DE")
    assert en.headline == "Air pollution (PM2.5): Very Unhealthy at station st-042"
    assert en.band_label == de.band_label == "Very Unhealthy"
    assert "140.3 µg/m³" in en.description and "US EPA AQI" in en.description
    assert "avoid all physical activity outdoors" in en.instruction
    assert en.area == "Around measuring station st-042 (radius 2 km)"
    assert de.headline == "Luftverschmutzung (PM2,5): Sehr ungesund an der Messstation st-042"
    assert "140,3 µg/m³" in de.description
    assert "jede körperliche Aktivität im Freien vermeiden" in de.instruction
    assert de.area == "Umkreis der Messstation st-042 (2 km)"


def test_all_clear_and_cancel_have_their_own_words() -> None:
    resolved = record(state="resolved", value=20.0, updated_at=T0 + timedelta(minutes=30))
    en = warning_text(resolved, warnings(), "all_clear", "en-GB")
    assert en.headline.startswith("All clear:") and "The alert is over" in en.description
    assert en.instruction == "No further precautions are needed because of this alert."
    de = warning_text(resolved, warnings(), "cancel", "de-DE")
    assert de.headline.startswith("Aufgehoben:") and "gilt nicht mehr" in de.instruction


def test_an_unknown_rule_falls_back_to_the_alerts_own_message() -> None:
    text = warning_text(record(rule_id="custom", metric="so2", window=None), warnings(), "active", "en-GB")
    assert text.description == "Station st-042: PM2.5 1-hour mean 140.3 µg/m³ exceeds 125.4 µg/m³"
    assert text.band_label is None and text.headline.startswith("Environmental hazard: Severe warning")


def test_a_long_headline_is_shortened() -> None:
    text = warning_text(record(station_id="s" * 200), warnings(), "active", "en-GB")
    assert len(text.headline) == HEADLINE_MAX and text.headline.endswith("…")


@pytest.mark.parametrize(("changes", "phase"), [
    ({}, "active"),
    ({"state": "resolved", "updated_at": T0 + timedelta(minutes=5)}, "all_clear"),
    ({"severity": "info", "threshold": 35.4}, None),  # opened below the public level: never public
    ({"severity": "info", "threshold": 35.4, "updated_at": T0 + timedelta(minutes=5)}, "cancel"),  # lowered
    ({"kind": "forecast", "rule_id": "pm25-who-24h.forecast", "severity": "info", "state": "resolved"}, "cancel"),
    ({"kind": "sensor_fault"}, None),
    ({"kind": "station_offline", "state": "resolved"}, None),
    ({"kind": "no-such-kind"}, None),
])
def test_which_states_are_public(changes: dict, phase: str | None) -> None:
    assert phase_of(record(**changes), warnings()) == phase
