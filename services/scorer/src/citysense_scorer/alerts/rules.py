"""Threshold rules (``config/rules.yaml``): typed model, loading, and band lookup."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Literal

import yaml
from citysense_common.contract import Severity
from citysense_common.registry import Registry
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DERIVED_METRICS = {"heat_index": "°C"}
_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
BUCKETS_PER_WINDOW = 60


class RulesError(ValueError):
    pass


@functools.lru_cache(maxsize=256)  # the engine asks for every rule's window on every evaluation
def duration_ms(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h, 24h")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


class Band(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threshold: float
    severity: Severity
    label: str


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    metric: str
    aggregation: Literal["value", "mean", "max"]
    window: str
    partial: bool = True
    comparator: Literal[">", ">="] = ">"
    bands: tuple[Band, ...] = Field(min_length=1)
    for_: str = Field(default="0s", alias="for")
    clear: float
    cooldown: str = "0s"
    source: str

    @field_validator("window", "for_", "cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        duration_ms(value)
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Rule:
        levels = [b.threshold for b in self.bands]
        if levels != sorted(levels):
            raise ValueError("bands must be in ascending threshold order")
        if self.clear >= levels[0] if self.comparator == ">=" else self.clear > levels[0]:
            raise ValueError(f"clear {self.clear} must lie below the lowest band {levels[0]} (hysteresis)")
        return self

    @property
    def window_ms(self) -> int:
        return duration_ms(self.window)

    @property
    def for_ms(self) -> int:
        return duration_ms(self.for_)

    @property
    def cooldown_ms(self) -> int:
        return duration_ms(self.cooldown)

    @property
    def series(self) -> tuple[str, int]:
        """Rules over the same metric and window share one bucketed series."""
        return (self.metric, self.window_ms)

    def exceeds(self, value: float, level: float) -> bool:
        return value >= level if self.comparator == ">=" else value > level

    def band_of(self, value: float) -> int:
        """Index of the highest band reached, or -1 below the lowest."""
        reached = -1
        for i, band in enumerate(self.bands):
            if self.exceeds(value, band.threshold):
                reached = i
        return reached


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = 1
    rules: tuple[Rule, ...]

    def series(self) -> list[tuple[str, int]]:
        return sorted({r.series for r in self.rules})


def load_rules(path: Path, registry: Registry | None = None) -> RuleSet:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        ruleset = RuleSet.model_validate(doc)
    except OSError as exc:
        raise RulesError(f"cannot read rules file {path}: {exc.strerror} (set CITYSENSE_RULES_FILE)") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise RulesError(f"{path}: {exc}") from None
    ids = [r.id for r in ruleset.rules]
    if len(set(ids)) != len(ids):
        raise RulesError(f"{path}: duplicate rule ids")
    if registry is not None:
        for rule in ruleset.rules:
            if rule.metric not in registry.metrics and rule.metric not in DERIVED_METRICS:
                raise RulesError(f"{path}: rule {rule.id} uses unknown metric {rule.metric!r}")
    return ruleset
