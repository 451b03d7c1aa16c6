"""openSenseMap phenomena and units map to registry metrics through config/opensensemap.yaml (+ a mapping file)."""

from __future__ import annotations

import logging

import pytest
from citysense_common.registry import load_registry
from citysense_simulator.opensensemap_mapping import MappingError, load_mapper


@pytest.fixture
def mapper():
    return load_mapper(load_registry())


@pytest.mark.parametrize(("title", "unit", "metric", "raw", "value"), [
    ("PM2.5", "µg/m³", "pm2_5", 12.7, 12.7),  # micro sign
    ("PM2.5", "μg/m³", "pm2_5", 12.7, 12.7),  # Greek mu, as some sketches write it
    ("PM10", "ug/m3", "pm10", 21.4, 21.4),
    ("Temperatur", "°C", "temperature", 17.32, 17.32),
    ("temperature", "°C", "temperature", -3.5, -3.5),
    ("Temperatur", "K", "temperature", 290.15, 17.0),
    ("Temperatur", "°F", "temperature", 212.0, 100.0),
    ("rel. Luftfeuchte", "%", "humidity", 61.05, 61.05),
    ("Humidity", "%", "humidity", 40.0, 40.0),
    ("Luftdruck", "Pa", "pressure", 101325.0, 1013.25),
    ("Luftdruck", "hPa", "pressure", 1008.4, 1008.4),
    ("pressure", "kPa", "pressure", 100.9, 1009.0),
    ("Lautstärke", "dB(A)", "noise_level", 63.4, 63.4),
    ("Beleuchtungsstärke", "lx", "illuminance", 5230.0, 5230.0),
    ("  pm2.5 ", "", "pm2_5", 3.0, 3.0),  # case and blanks ignored; no unit = the registry unit
])
def test_phenomena_map_to_registry_metrics_with_unit_conversion(mapper, title, unit, metric, raw, value) -> None:
    conversion = mapper.resolve(title, unit)
    assert conversion is not None and conversion.metric == metric
    assert conversion.apply(raw) == pytest.approx(value, abs=1e-9)


def test_unmapped_phenomena_and_units_are_reported_once_and_skipped(mapper, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="citysense.simulator.opensensemap")
    for _ in range(3):
        assert mapper.resolve("Wifi-Stärke", "dBm") is None
        assert mapper.resolve("Luftdruck", "psi") is None  # known phenomenon, unknown unit: never guessed
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Wifi-Stärke" in m for m in messages) == 1
    assert sum("'psi'" in m for m in messages) == 1
    assert mapper.unmapped == {("Wifi-Stärke", "dBm"), ("Luftdruck", "psi")}


def test_a_mapping_file_adds_phenomena_and_units(tmp_path) -> None:
    extra = tmp_path / "mine.yaml"
    extra.write_text("phenomena:\n  pm2_5: ['Feinstaub 2.5µm']\nunits:\n  pressure: {psi: {scale: 68.9476}}\n",
                     encoding="utf-8")
    mapper = load_mapper(load_registry(), extra)
    assert mapper.resolve("Feinstaub 2.5µm", "µg/m³").metric == "pm2_5"
    assert mapper.resolve("Luftdruck", "psi").apply(14.6959) == pytest.approx(1013.25, rel=1e-4)
    assert mapper.resolve("PM10", "µg/m³").metric == "pm10"  # defaults still there


def test_a_mapping_file_naming_an_unknown_metric_fails_with_file_and_entry(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("phenomena:\n  pm_25: ['PM2.5']\n", encoding="utf-8")
    with pytest.raises(MappingError, match=r"bad.yaml: phenomena.pm_25: not a metric of the registry"):
        load_mapper(load_registry(), bad)
