"""What a public warning says, in one language: event, headline, description, health advice and area.

Built from an alert's state alone (a store record, or :meth:`AlertRecord.of` an event), so the CAP feed and an
email about the same state say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from citysense_common.contract import AlertKind, Severity
from citysense_common.store import AlertRecord
from citysense_common.warnings.config import LanguageTexts, PublicWarnings, RuleInfo, rule_of

HEADLINE_MAX = 160  # CAP: "SHOULD be made as direct and actionable as possible while remaining short"; 160 = SMS

Phase = Literal["active", "all_clear", "cancel"]


def phase_of(record: AlertRecord, warnings: PublicWarnings) -> Phase | None:
    """Which warning the record's state is, or None when it is not public.

    An alert's kind must be public. An alert at a public severity is published (``active``; resolved:
    ``all_clear``; a resolved forecast: ``cancel``). An alert at a severity that is not public is published only as
    ``cancel``, and only when it may have been public before: it changed since it opened and its rule has a band of
    a public severity (the store keeps the newest state alone, so a lowered alert cannot tell its past severities).
    """
    config = warnings.config
    try:
        kind = AlertKind(record.kind)
    except ValueError:
        return None
    if kind not in config.public:
        return None
    public_now = config.is_public(record.kind, record.severity)
    rule = rule_of(warnings.rules, record.rule_id)
    may_have_been = (record.updated_at != record.opened_at and rule is not None
                     and any(config.is_public(record.kind, band.severity) for band in rule.bands))
    if record.state == "resolved":
        if kind is AlertKind.FORECAST:
            return "cancel" if public_now or may_have_been else None
        return "all_clear" if public_now else ("cancel" if may_have_been else None)
    if public_now:
        return "active"
    return "cancel" if may_have_been else None


@dataclass(frozen=True)
class WarningText:
    """The words of one warning in one language (a CAP ``<info>`` block's texts)."""

    language: str
    event: str
    headline: str
    description: str
    instruction: str
    area: str
    sender_name: str
    band_label: str | None  # the rule's band label (config/rules.yaml, untranslated), when the rule names one


def number(value: float, texts: LanguageTexts, *, places: int | None) -> str:
    text = f"{value:.{places}f}" if places is not None else f"{value:g}"
    return text.replace(".", ",") if texts.decimal_comma else text


def warning_text(record: AlertRecord, warnings: PublicWarnings, phase: Phase, language: str) -> WarningText:
    """The texts of ``record`` in ``phase`` in ``language`` (a key of ``config.languages``)."""
    config = warnings.config
    texts = config.languages[language]
    rule: RuleInfo | None = rule_of(warnings.rules, record.rule_id)
    forecast = record.kind == AlertKind.FORECAST.value
    band = rule.band_at(record.threshold) if rule else None
    label = band.label if band and band.label else None
    try:
        severity: Severity | None = Severity(record.severity)
    except ValueError:
        severity = None
    metric = record.metric or ""
    metric_texts = texts.metrics.get(metric) or texts.metrics["default"]
    fields = {
        "event": metric_texts.event, "metric": metric_texts.name,
        "band": texts.bands.get(label, label) if label else (texts.severity_names[severity] if severity else ""),
        "station": record.station_id, "unit": warnings.units.get(metric, ""),
        "value": "" if record.value is None else number(record.value, texts, places=1),
        "threshold": "" if record.threshold is None else number(record.threshold, texts, places=None),
        "window": record.window or (rule.window if rule else ""),
        "aggregation": texts.aggregations.get(rule.aggregation, rule.aggregation) if rule else "",
        "standard": rule.standard if rule else "", "radius_km": number(config.radius_km, texts, places=None),
        "message": record.message,
    }
    if phase == "active":
        headline_t = texts.headline_forecast if forecast else texts.headline
        description_t = texts.description_forecast if forecast else texts.description
        advice = texts.advice
        instruction = advice.forecast if forecast else (
            advice.bands.get(label or "") or (advice.severities[severity] if severity else advice.cancel))
    elif phase == "all_clear":
        headline_t, description_t = texts.headline_all_clear, texts.description_all_clear
        instruction = texts.advice.all_clear
    else:
        headline_t, description_t = texts.headline_cancel, texts.description_cancel
        instruction = texts.advice.cancel
    measured = rule is not None and all(fields[k] for k in ("value", "threshold", "window")) and metric
    description = (description_t if measured else texts.description_plain).format_map(fields)
    if rule is not None and rule.standard:
        description += " " + texts.standard.format_map(fields)
    headline = headline_t.format_map(fields)
    if len(headline) > HEADLINE_MAX:
        headline = headline[: HEADLINE_MAX - 1] + "…"
    return WarningText(language=language, event=metric_texts.event, headline=headline, description=description,
                       instruction=instruction, area=texts.area.format_map(fields), sender_name=texts.sender_name,
                       band_label=label)
