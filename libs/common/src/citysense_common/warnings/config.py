"""The public warnings' configuration (``config/cap.yaml``) and what it needs of ``config/rules.yaml``.

Both files are read once when a service starts (:func:`load_warnings`); a mistake in ``cap.yaml`` stops the start
with a message naming the field. The rules file is the scorer's: only each rule's metric, aggregation, window,
standard (``source``) and bands are read, with a parser of its own, so no service imports the scorer.
"""

from __future__ import annotations

import logging
import math
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator

from citysense_common.contract import AlertKind, Severity
from citysense_common.registry import RegistryError, load_registry
from citysense_common.settings import SettingsError

log = logging.getLogger("citysense.warnings")

CapSeverity = Literal["Extreme", "Severe", "Moderate", "Minor"]
CapCategory = Literal["Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health", "Env", "Transport", "Infra",
                      "CBRNE", "Other"]
CapResponseType = Literal["Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "None"]
# CAP 1.2: sender and identifier "MUST NOT include spaces, commas or restricted characters (< and &)".
CAP_ID_PATTERN = r"^[^\s,<&]+$"
# xs:language (RFC 3066 style), the type of CAP's <language>.
LANGUAGE = r"^[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*$"

# Every placeholder a text may use, with a sample value to check the templates when the file is read.
PLACEHOLDERS = {
    "event": "Air pollution (PM2.5)", "metric": "PM2.5", "band": "Unhealthy", "station": "st-1", "value": "60.2",
    "threshold": "55.4", "unit": "µg/m³", "window": "1h", "aggregation": "mean", "standard": "US EPA AQI",
    "radius_km": "2", "message": "PM2.5 1-hour mean 60.2 µg/m³ exceeds 55.4 µg/m³",
}


class CapConfigError(SettingsError):
    """``cap.yaml`` or ``rules.yaml`` cannot be used; the message names the file and the field."""


class MetricTexts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    event: str = Field(min_length=1, max_length=34, description="CAP <event>: the hazard (under 35 characters)")
    name: str = Field(min_length=1, description="the metric's name in descriptions")


class Advice(BaseModel):
    """CAP <instruction>: health advice, by the band label of config/rules.yaml, else by severity."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    bands: dict[str, str] = Field(default_factory=dict)
    severities: dict[Severity, str]
    forecast: str
    all_clear: str
    cancel: str

    @field_validator("severities")
    @classmethod
    def _every_severity(cls, value: dict[Severity, str]) -> dict[Severity, str]:
        missing = [s.value for s in Severity if s not in value]
        if missing:
            raise ValueError(f"advice is missing for severities {missing}")
        return value


class LanguageTexts(BaseModel):
    """The words of one <info> block. Templates use ``{placeholder}`` fields (see :data:`PLACEHOLDERS`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sender_name: str
    feed_title: str
    decimal_comma: bool = False
    headline: str
    headline_forecast: str
    headline_all_clear: str
    headline_cancel: str
    description: str
    description_forecast: str
    description_all_clear: str
    description_cancel: str
    description_plain: str
    standard: str
    area: str
    severity_names: dict[Severity, str]
    metrics: dict[str, MetricTexts]
    aggregations: dict[str, str] = Field(default_factory=dict)
    bands: dict[str, str] = Field(default_factory=dict, description="band labels of config/rules.yaml, translated")
    advice: Advice

    @model_validator(mode="after")
    def _templates(self) -> LanguageTexts:
        for name in ("headline", "headline_forecast", "headline_all_clear", "headline_cancel", "description",
                     "description_forecast", "description_all_clear", "description_cancel", "description_plain",
                     "standard", "area"):
            template = getattr(self, name)
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
            unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
            if unknown:
                raise ValueError(f"{name}: unknown placeholder(s) {unknown}; known: {sorted(PLACEHOLDERS)}")
            template.format_map(PLACEHOLDERS)
        if "default" not in self.metrics:
            raise ValueError("metrics needs a 'default' entry for metrics it does not name")
        missing = [s.value for s in Severity if s not in self.severity_names]
        if missing:
            raise ValueError(f"severity_names is missing {missing}")
        return self


class CapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: Literal[1]
    sender: Annotated[str, StringConstraints(pattern=CAP_ID_PATTERN, max_length=200)]
    status: Literal["Actual", "Exercise", "System", "Test", "Draft"] = "Actual"
    source: str | None = None
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    radius_km: float = Field(gt=0, le=500, allow_inf_nan=False)
    # msgType of a resolved alert's all-clear (its info says AllClear either way): Cancel ends the warning outright;
    # Update is what Google Public Alerts and the OASIS EM TC (EMERGENCY-31) prefer.
    all_clear_msg_type: Literal["Cancel", "Update"] = "Cancel"
    valid_hours: float = Field(default=6, gt=0, le=24 * 7, allow_inf_nan=False)
    all_clear_hours: float = Field(default=6, gt=0, le=24 * 7, allow_inf_nan=False)
    lookback_days: float = Field(default=7, gt=0, le=366, allow_inf_nan=False)
    max_entries: int = Field(default=500, ge=1, le=10_000)
    public: dict[AlertKind, list[Severity]]
    categories: list[CapCategory] = Field(default_factory=lambda: ["Env"], min_length=1)
    severity: dict[Severity, CapSeverity]
    severity_by_band: dict[str, CapSeverity] = Field(default_factory=dict)
    response_type: dict[Severity, CapResponseType]
    units: dict[str, str] = Field(default_factory=dict)
    languages: dict[Annotated[str, StringConstraints(pattern=LANGUAGE)], LanguageTexts] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> CapConfig:
        for name in ("severity", "response_type"):
            missing = [s.value for s in Severity if s not in getattr(self, name)]
            if missing:
                raise ValueError(f"{name} is missing {missing}")
        return self

    def is_public(self, kind: str, severity: str) -> bool:
        try:
            return Severity(severity) in self.public.get(AlertKind(kind), ())
        except ValueError:
            return False


@dataclass(frozen=True)
class Band:
    threshold: float
    severity: str
    label: str


@dataclass(frozen=True)
class RuleInfo:
    """What a CAP message says of a rule of config/rules.yaml."""

    rule_id: str
    metric: str
    aggregation: str
    window: str
    standard: str
    bands: tuple[Band, ...]

    def band_at(self, threshold: float | None) -> Band | None:
        """The band an alert is in: its event carries the band's threshold."""
        if threshold is None:
            return None
        for band in self.bands:
            if math.isclose(band.threshold, threshold, rel_tol=1e-9, abs_tol=1e-9):
                return band
        return None


def rule_of(rules: dict[str, RuleInfo], rule_id: str) -> RuleInfo | None:
    """The rule of an alert; a forecast's rule id is its threshold rule's id plus ``.forecast``."""
    return rules.get(rule_id) or rules.get(rule_id.removesuffix(".forecast"))


def parse_rules(doc: object, source: str) -> dict[str, RuleInfo]:
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise CapConfigError(f"{source}: expected a mapping with a 'rules' list")
    rules: dict[str, RuleInfo] = {}
    for i, raw in enumerate(doc["rules"]):
        try:
            bands = tuple(Band(float(b["threshold"]), str(b["severity"]), str(b.get("label") or ""))
                          for b in raw.get("bands") or ())
            info = RuleInfo(rule_id=str(raw["id"]), metric=str(raw["metric"]),
                            aggregation=str(raw.get("aggregation", "value")), window=str(raw.get("window", "")),
                            standard=str(raw.get("source") or ""), bands=bands)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CapConfigError(f"{source}: rules[{i}]: {exc!r}") from None
        rules[info.rule_id] = info
    return rules


def load_rules(path: Path) -> dict[str, RuleInfo]:
    """The rules by id; none when the file is absent (messages then name the severity instead of the band)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        log.warning("public warnings: no rules file at %s (set CITYSENSE_RULES_FILE); messages name severities, not "
                    "the rules' bands", path)
        return {}
    except OSError as exc:
        raise CapConfigError(f"cannot read rules file {path}: {exc.strerror}") from None
    try:
        return parse_rules(yaml.safe_load(text), str(path))
    except yaml.YAMLError as exc:
        raise CapConfigError(f"{path}: not valid YAML: {exc}") from None


def parse_cap_config(doc: object, source: str) -> CapConfig:
    try:
        return CapConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "document"
        raise CapConfigError(f"{source}: {where}: {first['msg']}") from None


@dataclass(frozen=True)
class PublicWarnings:
    """The configuration, the rules and the metric units: everything warning texts are built from."""

    config: CapConfig
    rules: dict[str, RuleInfo]
    units: dict[str, str]


def load_warnings(cap_path: Path, *, required: bool, rules_path: Path,
                  metrics_file: Path | None = None) -> PublicWarnings | None:
    """Read ``cap.yaml`` (and the rules and metric units it needs), or None when it is absent and not
    ``required`` (the default file of a deployment without public warnings)."""
    try:
        text = cap_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise CapConfigError(f"CITYSENSE_CAP_FILE: no file at {cap_path}") from None
        log.info("public warnings off: no %s", cap_path)
        return None
    except OSError as exc:
        raise CapConfigError(f"cannot read CAP configuration {cap_path}: {exc.strerror}") from None
    try:
        doc: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CapConfigError(f"{cap_path}: not valid YAML: {exc}") from None
    config = parse_cap_config(doc, str(cap_path))
    units: dict[str, str] = {}
    try:
        units = {name: metric.unit for name, metric in load_registry(metrics_file).metrics.items()}
    except RegistryError as exc:
        log.warning("public warnings: metric units unknown (%s)", exc)
    units.update(config.units)
    return PublicWarnings(config=config, rules=load_rules(rules_path), units=units)
