"""Citizen settings: environment, validation messages, and where the signing secret comes from."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from citysense_common.citizen.settings import (
    SECRET_FILE_NAME,
    CitizenSettings,
    load_citizen_settings,
)
from citysense_common.settings import SettingsError

GOOD_SECRET = "Zr3x9TQ1mWb7c2LpVn8sKf4hYd6gJa0E"  # noqa: S105 - a test value


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_citizen_settings()
    assert defaults.enabled and defaults.secret is None
    assert defaults.mail_topic == "citysense.citizen-mail" and defaults.confirm_hours == 48
    assert defaults.token_lifetime("confirm") == timedelta(hours=48)
    assert defaults.token_lifetime("unsubscribe") == timedelta(days=365)
    monkeypatch.setenv("CITYSENSE_CITIZEN_PUBLIC_URL", "https://air.city.example/ ")
    monkeypatch.setenv("CITYSENSE_CITIZEN_CONFIRM_HOURS", "2")
    monkeypatch.setenv("CITYSENSE_CITIZEN_SECRET", GOOD_SECRET)
    s = load_citizen_settings()
    assert s.public_url == "https://air.city.example"
    assert s.link("confirm", "t.k") == "https://air.city.example/citizen/confirm?token=t.k"
    assert s.one_click_unsubscribe_url("t.k") == "https://air.city.example/v1/citizen/unsubscribe?token=t.k"
    assert s.token_lifetime("confirm") == timedelta(hours=2)
    assert GOOD_SECRET not in repr(s) and GOOD_SECRET not in str(s.model_dump())


@pytest.mark.parametrize(("name", "value", "message"), [
    ("PUBLIC_URL", "air.city.example", "CITYSENSE_CITIZEN_PUBLIC_URL: .*absolute http"),
    ("PUBLIC_URL", "https://u:p@air.city.example", "CITYSENSE_CITIZEN_PUBLIC_URL: .*without credentials"),
    ("CONFIRM_HOURS", "0", "CITYSENSE_CITIZEN_CONFIRM_HOURS"),
    ("RATE_PER_ADDRESS", "zero", "CITYSENSE_CITIZEN_RATE_PER_ADDRESS"),
    ("MAIL_TOPIC", " ", "CITYSENSE_CITIZEN_MAIL_TOPIC"),
])
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(f"CITYSENSE_CITIZEN_{name}", value)
    with pytest.raises(SettingsError, match=message):
        load_citizen_settings()


def test_a_configured_secret_is_used_and_a_weak_one_refused(tmp_path: Path) -> None:
    assert CitizenSettings(secret=GOOD_SECRET).resolve_secret("production", tmp_path) == GOOD_SECRET
    for weak in ("short", "a" * 40, "ab" * 20):
        with pytest.raises(SettingsError, match="at least 32 random characters"):
            CitizenSettings(secret=weak).resolve_secret("development", tmp_path)
    assert not (tmp_path / SECRET_FILE_NAME).exists()


def test_production_requires_the_secret(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="CITYSENSE_CITIZEN_SECRET is required"):
        CitizenSettings().resolve_secret("production", tmp_path)


def test_development_generates_one_secret_file_that_processes_share(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = CitizenSettings().resolve_secret("development", data_dir)
    path = data_dir / SECRET_FILE_NAME
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert CitizenSettings().resolve_secret("development", data_dir) == first  # the notifier reads the same
    assert [p.name for p in data_dir.iterdir()] == [SECRET_FILE_NAME]  # no temporary file left behind


def test_an_unusable_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / SECRET_FILE_NAME).write_text("tiny\n")
    with pytest.raises(SettingsError, match="delete it"):
        CitizenSettings().resolve_secret("development", tmp_path)
