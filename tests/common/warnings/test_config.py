"""config/cap.yaml, read by the shared public-warnings package: every mistake is named when the file is read,
and without the default file the public warnings are off (the CAP feed answers 404, no warning email is sent)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from citysense_common.settings import load_settings
from citysense_common.warnings.config import CapConfigError, load_warnings, parse_cap_config
from citysense_common.warnings.settings import PublicWarningSettings

REPO = Path(__file__).resolve().parents[3]


def _config_doc() -> dict:
    return yaml.safe_load((REPO / "config/cap.yaml").read_text(encoding="utf-8"))


def test_the_repository_configuration_reads_with_its_rules_and_units() -> None:
    warnings = load_warnings(REPO / "config/cap.yaml", required=True, rules_path=REPO / "config/rules.yaml",
                             metrics_file=REPO / "config/metrics.yaml")
    assert warnings is not None
    assert list(warnings.config.languages) == ["en-GB", "de-DE"]
    assert warnings.units["pm2_5"] == "µg/m³" and warnings.units["heat_index"] == "°C"
    assert "pm25-epa-aqi-1h" in warnings.rules
    assert warnings.config.is_public("threshold", "warning")
    assert not warnings.config.is_public("sensor_fault", "critical")
    assert not warnings.config.is_public("threshold", "info")


def test_the_configuration_is_checked_when_read() -> None:
    doc = _config_doc()
    parse_cap_config(doc, "cap.yaml")
    doc["sender"] = "city alerts"
    with pytest.raises(CapConfigError, match="sender"):
        parse_cap_config(doc, "cap.yaml")
    doc = _config_doc()
    doc["languages"]["de-DE"]["headline"] = "{event} an {station_name}"
    with pytest.raises(CapConfigError, match="station_name"):
        parse_cap_config(doc, "cap.yaml")
    doc = _config_doc()
    doc["public"]["threshold"] = ["urgent"]
    with pytest.raises(CapConfigError, match="public"):
        parse_cap_config(doc, "cap.yaml")


def test_a_file_that_is_not_yaml_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "cap.yaml"
    bad.write_text("sender: [unclosed\n", encoding="utf-8")
    with pytest.raises(CapConfigError, match="not valid YAML"):
        load_warnings(bad, required=True, rules_path=REPO / "config/rules.yaml")


def test_without_a_configuration_file_the_warnings_are_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_CONFIG_DIR", str(tmp_path))  # no cap.yaml there
    assert load_settings(PublicWarningSettings).public_warnings() is None
    explicit = load_settings(PublicWarningSettings, cap_file=tmp_path / "missing.yaml")
    with pytest.raises(CapConfigError, match="CITYSENSE_CAP_FILE"):
        explicit.public_warnings()
