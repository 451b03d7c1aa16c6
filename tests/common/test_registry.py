"""Metric registry: the shipped file, aliases, clamping ranges, and clear errors for broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from citysense_common.registry import RegistryError, load_registry, parse_registry

SEED_TABLE = {
    "temperature": (25, 2), "humidity": (60, 3), "pressure": (1013, 2), "air_quality": (200, 20),
    "particulate_matter": (30, 2), "noise_level": (50, 3), "illuminance": (500, 50), "wind_speed": (5, 20),
    "rainfall": (0, 3),
}


def test_shipped_registry_has_the_ten_metrics_with_units() -> None:
    registry = load_registry()
    assert registry.names() == ["temperature", "humidity", "pressure", "air_quality", "pm2_5", "pm10",
                                "noise_level", "illuminance", "wind_speed", "rainfall"]
    assert registry.metrics["pm2_5"].unit == "µg/m³"
    assert registry.default_profile == "city"


def test_seed_profile_reproduces_the_original_table_exactly() -> None:
    registry = load_registry()
    seed = {m.name: (m.profiles["seed"].mean, m.profiles["seed"].std) for m in registry.profile_metrics("seed")}
    expected = {registry.resolve(name).name: value for name, value in SEED_TABLE.items()}
    assert seed == expected


def test_aliases_resolve_to_canonical_metric() -> None:
    registry = load_registry()
    assert registry.resolve("particulate_matter").name == "pm2_5"
    assert registry.resolve("pm2_5").name == "pm2_5"
    assert registry.resolve("nope") is None


def test_range_clamps_instead_of_mirroring() -> None:
    rain = load_registry().metrics["rainfall"].range
    assert rain.clamp(-2.5) == 0.0  # abs() would give 2.5
    assert rain.clamp(1000) == 300.0


def test_new_metric_needs_only_a_registry_entry(tmp_path: Path) -> None:
    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "config/metrics.yaml").read_text("utf-8"))
    doc["metrics"]["co2"] = {"unit": "ppm", "description": "carbon dioxide", "range": {"min": 0, "max": 10000},
                             "profiles": {"city": {"mean": 420, "std": 30}}}
    path = tmp_path / "metrics.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), "utf-8")
    registry = load_registry(path)
    assert "co2" in [m.name for m in registry.profile_metrics("city")]


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"metrics": []}, "expected a mapping with a 'metrics' section"),
        ({"default_profile": "x", "profiles": {"city": {}}, "metrics": {}}, "default_profile 'x'"),
        ({"default_profile": "city", "profiles": {"city": {}},
          "metrics": {"a": {"unit": "u", "description": "d", "range": {"min": 5, "max": 1}}}}, "range min 5.0"),
        ({"default_profile": "city", "profiles": {"city": {}},
          "metrics": {"a": {"unit": "u", "description": "d", "range": {"min": 0, "max": 1}, "aliases": ["b"]},
                      "b": {"unit": "u", "description": "d", "range": {"min": 0, "max": 1}}}}, "used by both"),
        ({"default_profile": "city", "profiles": {"city": {}},
          "metrics": {"a": {"unit": "u", "description": "d", "range": {"min": 0, "max": 1},
                            "profiles": {"moon": {"mean": 0, "std": 1}}}}}, "undeclared profile 'moon'"),
        ({"default_profile": "city", "profiles": {"city": {}},
          "metrics": {"a": {"unit": "u", "description": "d", "range": {"min": 0, "max": 1},
                            "profiles": {"city": {"mean": 0, "std": 0}}}}}, "greater than 0"),
    ],
)
def test_broken_registries_get_a_clear_error(doc: dict, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_registry(doc, "test.yaml")


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="cannot read metric registry .*missing.yaml"):
        load_registry(tmp_path / "missing.yaml")


def test_env_var_overrides_the_registry_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("default_profile: p\nprofiles: {p: {}}\nmetrics:\n  co2: {unit: ppm, description: c, "
                    "range: {min: 0, max: 1}}\n", "utf-8")
    monkeypatch.setenv("CITYSENSE_METRICS_FILE", str(path))
    assert load_registry().names() == ["co2"]
