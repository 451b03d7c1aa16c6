"""Metric registry: the sensor types citysense knows, loaded from ``config/metrics.yaml``.

Adding a sensor type is a registry entry, never code: the simulator, the scorer's validation and outlier
scoring, and the API all read their metric list from here.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from citysense_common.contract import METRIC_NAME_PATTERN
from citysense_common.paths import config_dir

METRICS_FILE_ENV = "CITYSENSE_METRICS_FILE"


class RegistryError(ValueError):
    """The registry file is missing or wrong; the message says where."""


class Distribution(BaseModel):
    """Normal distribution a simulator profile draws a metric from (and the outlier scorer judges against)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mean: float
    std: float = Field(gt=0)


class PhysicalRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: float
    max: float

    @model_validator(mode="after")
    def _ordered(self) -> PhysicalRange:
        if self.min >= self.max:
            raise ValueError(f"range min {self.min} must be below max {self.max}")
        return self

    def clamp(self, value: float) -> float:
        return min(max(value, self.min), self.max)


class Metric(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=METRIC_NAME_PATTERN)
    unit: str
    description: str
    range: PhysicalRange
    aliases: tuple[str, ...] = ()
    profiles: dict[str, Distribution] = Field(default_factory=dict)
    # Metrics that stay constant for long stretches (rain at 0 mm/h) must not trip flatline fault detection.
    varies: bool = True


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""


class Registry(BaseModel):
    """All metrics, keyed by canonical name, plus the simulator profiles."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = 1
    default_profile: str
    profiles: dict[str, Profile]
    metrics: dict[str, Metric]

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        if self.default_profile not in self.profiles:
            raise ValueError(f"default_profile {self.default_profile!r} is not among profiles {sorted(self.profiles)}")
        seen: dict[str, str] = {}
        for key, metric in self.metrics.items():
            if key != metric.name:
                raise ValueError(f"metric key {key!r} differs from its name {metric.name!r}")
            for alias in (metric.name, *metric.aliases):
                if alias in seen:
                    raise ValueError(f"name {alias!r} is used by both {seen[alias]!r} and {metric.name!r}")
                seen[alias] = metric.name
            for profile in metric.profiles:
                if profile not in self.profiles:
                    raise ValueError(f"metric {metric.name!r} uses undeclared profile {profile!r}")
        return self

    @cached_property
    def _by_name(self) -> dict[str, Metric]:
        return {alias: metric for metric in self.metrics.values() for alias in (metric.name, *metric.aliases)}

    def resolve(self, name: str) -> Metric | None:
        """The metric for a canonical name or alias, or None when unknown."""
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return list(self.metrics)

    def profile_metrics(self, profile: str) -> list[Metric]:
        """Metrics that the profile simulates, in registry order."""
        if profile not in self.profiles:
            raise RegistryError(f"unknown profile {profile!r}; choose one of {sorted(self.profiles)}")
        return [metric for metric in self.metrics.values() if profile in metric.profiles]


def default_metrics_file() -> Path:
    return Path(os.environ.get(METRICS_FILE_ENV) or config_dir() / "metrics.yaml")


def parse_registry(doc: object, source: str = "<registry>") -> Registry:
    if not isinstance(doc, dict) or not isinstance(doc.get("metrics"), dict):
        raise RegistryError(f"{source}: expected a mapping with a 'metrics' section")
    metrics = {key: {"name": key, **(value or {})} for key, value in doc["metrics"].items()}
    try:
        return Registry.model_validate({**doc, "metrics": metrics})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RegistryError(f"{source}: {where}: {first['msg']}") from None


def load_registry(path: str | Path | None = None) -> Registry:
    """Load and validate the registry (default: ``$CITYSENSE_METRICS_FILE`` or ``config/metrics.yaml``)."""
    file = Path(path) if path else default_metrics_file()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read metric registry {file}: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistryError(f"{file}: not valid YAML: {exc}") from None
    return parse_registry(doc, str(file))
