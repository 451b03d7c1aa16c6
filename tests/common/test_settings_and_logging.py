"""Settings are typed and fail with the variable name; logs never carry secrets."""

from __future__ import annotations

import json
import logging

import pytest
from citysense_common.log import redact, setup_logging
from citysense_common.settings import CommonSettings, SettingsError, load_settings


def test_defaults_point_at_the_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CITYSENSE_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.setenv("CITYSENSE_KAFKA_PORT", "19999")
    settings = load_settings(CommonSettings)
    assert settings.bootstrap == "127.0.0.1:19999"
    assert settings.readings_topic == "citysense.readings"


def test_bootstrap_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_KAFKA_BOOTSTRAP", "kafka:9092")
    monkeypatch.setenv("CITYSENSE_KAFKA_OPTIONS", '{"security.protocol": "SSL"}')
    settings = load_settings(CommonSettings)
    assert settings.bootstrap == "kafka:9092"
    assert settings.kafka_options == {"security.protocol": "SSL"}


def test_bad_value_names_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_KAFKA_PORT", "ninety")
    with pytest.raises(SettingsError, match="CITYSENSE_KAFKA_PORT"):
        load_settings(CommonSettings)


def test_unknown_profile_is_refused_with_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_PROFILE", "mars")
    with pytest.raises(SettingsError, match=r"CITYSENSE_PROFILE='mars'.*\['city', 'seed'\]"):
        load_settings(CommonSettings).registry()


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer abc.def-123", "abc.def-123"),
        ("created secret whsec_AbC123xyz", "AbC123xyz"),
        ('{"token": "s3cr3t"}', "s3cr3t"),
        ("password=hunter2 user=x", "hunter2"),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_json_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    log = setup_logging("unit", "INFO", "json")
    log.info("subscriber got %s", "whsec_topsecret")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["service"] == "unit"
    assert "topsecret" not in line["msg"]
    logging.getLogger().handlers.clear()


def test_library_chatter_stays_out_of_an_info_log(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("unit", "INFO")
    logging.getLogger("py4j.clientserver").info("Received command c on object id p0")
    logging.getLogger("py4j.clientserver").warning("connection lost")
    logging.getLogger("unit").info("batch 1 stored")
    err = capsys.readouterr().err
    assert "Received command" not in err
    assert "connection lost" in err and "batch 1 stored" in err
    logging.getLogger().handlers.clear()
