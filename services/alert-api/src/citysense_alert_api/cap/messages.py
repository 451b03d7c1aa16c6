"""An alert's current CAP 1.2 message, derived from its store record alone (see the package docstring)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from citysense_common.contract import AlertKind, Severity
from citysense_common.store import AlertRecord

from citysense_alert_api.cap.config import CapFeed, LanguageTexts, RuleInfo, rule_of

# Namespace of the message identifiers (UUID v5 of alert id, event key and re-issue number).
IDENTIFIERS = uuid.UUID("6f0c2d4e-8a1b-5c3d-9e7f-1a2b3c4d5e6f")
HEADLINE_MAX = 160  # CAP: "SHOULD be made as direct and actionable as possible while remaining short"; 160 = SMS

Phase = Literal["active", "all_clear", "cancel"]
MsgType = Literal["Alert", "Update", "Cancel"]


@dataclass(frozen=True)
class MessageRef:
    """An earlier message, as CAP's <references> names it: sender, identifier and sent."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True)
class Info:
    language: str
    categories: tuple[str, ...]
    event: str
    response_type: str
    urgency: str
    severity: str
    certainty: str
    effective: datetime
    onset: datetime | None
    expires: datetime
    sender_name: str
    headline: str
    description: str
    instruction: str
    web: str | None
    parameters: tuple[tuple[str, str], ...]
    area_desc: str
    circle: str | None


@dataclass(frozen=True)
class CapMessage:
    alert_id: str
    identifier: str
    sender: str
    sent: datetime
    status: str
    msg_type: MsgType
    source: str | None
    references: tuple[MessageRef, ...]
    incidents: str | None
    expires: datetime
    infos: tuple[Info, ...]

    def current(self, now: datetime) -> bool:
        """Whether the feed lists it: not yet expired."""
        return self.expires > now


def message_id(alert_id: str, key: str, number: int) -> str:
    return str(uuid.uuid5(IDENTIFIERS, f"{alert_id}|{key}|{number}"))


def phase_of(record: AlertRecord, feed: CapFeed) -> Phase | None:
    """Which message the record's state is, or None when it is not public.

    An alert's kind must be public. An alert at a public severity is published (``active``; resolved:
    ``all_clear``; a resolved forecast: ``cancel``). An alert at a severity that is not public is published only as
    ``cancel``, and only when it may have been public before: it changed since it opened and its rule has a band of
    a public severity (the store keeps the newest state alone, so a lowered alert cannot tell its past severities).
    """
    config = feed.config
    try:
        kind = AlertKind(record.kind)
    except ValueError:
        return None
    if kind not in config.public:
        return None
    public_now = config.is_public(record.kind, record.severity)
    rule = rule_of(feed.rules, record.rule_id)
    may_have_been = (record.updated_at != record.opened_at and rule is not None
                     and any(config.is_public(record.kind, band.severity) for band in rule.bands))
    if record.state == "resolved":
        if kind is AlertKind.FORECAST:
            return "cancel" if public_now or may_have_been else None
        return "all_clear" if public_now else ("cancel" if may_have_been else None)
    if public_now:
        return "active"
    return "cancel" if may_have_been else None


def build_message(record: AlertRecord, feed: CapFeed, now: datetime, base_url: str) -> CapMessage | None:
    """The alert's current CAP message at ``now``, or None when the alert is not public."""
    phase = phase_of(record, feed)
    if phase is None:
        return None
    config = feed.config
    sender = config.sender
    alert_ref = MessageRef(sender, message_id(record.alert_id, "open", 0), record.opened_at)
    references: list[MessageRef] = []
    if phase == "active":
        first = record.updated_at == record.opened_at
        key = "open" if first else record.last_event_id
        base = record.opened_at if first else record.updated_at
        step = timedelta(hours=config.valid_hours / 2)
        number = max(0, (now - base) // step)
        sent = base + number * step
        expires = sent + 2 * step
        msg_type: MsgType = "Alert" if first and number == 0 else "Update"
        if msg_type != "Alert":
            references.append(alert_ref)
        if number >= 1 and not (first and number == 1):
            references.append(MessageRef(sender, message_id(record.alert_id, key, number - 1),
                                         base + (number - 1) * step))
    else:
        key, number, sent = record.last_event_id, 0, record.updated_at
        expires = sent + timedelta(hours=config.all_clear_hours)
        msg_type = "Update" if phase == "all_clear" else "Cancel"
        references.append(alert_ref)
    rule = rule_of(feed.rules, record.rule_id)
    infos = tuple(_info(record, feed, rule, phase, code, texts, sent, expires, base_url)
                  for code, texts in config.languages.items())
    return CapMessage(
        alert_id=record.alert_id, identifier=message_id(record.alert_id, key, number), sender=sender, sent=sent,
        status=config.status, msg_type=msg_type, source=config.source, references=tuple(references),
        incidents=record.alert_id if _token(record.alert_id) else None, expires=expires, infos=infos)


def _token(value: str) -> bool:
    return bool(value) and not any(c.isspace() or c in ",<&" for c in value)


def _number(value: float, texts: LanguageTexts, *, places: int | None) -> str:
    text = f"{value:.{places}f}" if places is not None else f"{value:g}"
    return text.replace(".", ",") if texts.decimal_comma else text


def _coordinate(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _info(record: AlertRecord, feed: CapFeed, rule: RuleInfo | None, phase: Phase, language: str,
          texts: LanguageTexts, sent: datetime, expires: datetime, base_url: str) -> Info:
    config = feed.config
    forecast = record.kind == AlertKind.FORECAST.value
    band = rule.band_at(record.threshold) if rule else None
    label = band.label if band and band.label else None
    try:
        severity: Severity | None = Severity(record.severity)
    except ValueError:
        severity = None
    cap_severity = (config.severity_by_band.get(label) if label else None) or (
        config.severity[severity] if severity else "Unknown")
    metric = record.metric or ""
    metric_texts = texts.metrics.get(metric) or texts.metrics["default"]
    fields = {
        "event": metric_texts.event, "metric": metric_texts.name,
        "band": texts.bands.get(label, label) if label else (texts.severity_names[severity] if severity else ""),
        "station": record.station_id, "unit": feed.units.get(metric, ""),
        "value": "" if record.value is None else _number(record.value, texts, places=1),
        "threshold": "" if record.threshold is None else _number(record.threshold, texts, places=None),
        "window": record.window or (rule.window if rule else ""),
        "aggregation": texts.aggregations.get(rule.aggregation, rule.aggregation) if rule else "",
        "standard": rule.standard if rule else "", "radius_km": _number(config.radius_km, texts, places=None),
        "message": record.message,
    }
    if phase == "active":
        urgency = "Expected" if forecast else "Immediate"
        response = "Prepare" if forecast else (config.response_type[severity] if severity else "Monitor")
        headline_t = texts.headline_forecast if forecast else texts.headline
        description_t = texts.description_forecast if forecast else texts.description
        advice = texts.advice
        instruction = advice.forecast if forecast else (
            advice.bands.get(label or "") or (advice.severities[severity] if severity else advice.cancel))
    elif phase == "all_clear":
        urgency, response = "Past", "AllClear"
        headline_t, description_t = texts.headline_all_clear, texts.description_all_clear
        instruction = texts.advice.all_clear
    else:
        urgency, response = "Past", "None"
        headline_t, description_t = texts.headline_cancel, texts.description_cancel
        instruction = texts.advice.cancel
    measured = rule is not None and all(fields[k] for k in ("value", "threshold", "window")) and metric
    description = (description_t if measured else texts.description_plain).format_map(fields)
    if rule is not None and rule.standard:
        description += " " + texts.standard.format_map(fields)
    headline = headline_t.format_map(fields)
    if len(headline) > HEADLINE_MAX:
        headline = headline[: HEADLINE_MAX - 1] + "…"
    parameters = [("citysense:alert_id", record.alert_id), ("citysense:station_id", record.station_id),
                  ("citysense:rule_id", record.rule_id), ("citysense:severity", record.severity)]
    if label:
        parameters.append(("citysense:band", label))
    if record.metric:
        parameters.append(("citysense:metric", record.metric))
    if record.value is not None:
        parameters.append(("citysense:value", f"{record.value:g}"))
    if record.threshold is not None:
        parameters.append(("citysense:threshold", f"{record.threshold:g}"))
    circle = None
    if record.lat is not None and record.lon is not None:
        circle = f"{_coordinate(record.lat)},{_coordinate(record.lon)} {config.radius_km:g}"
    return Info(
        language=language, categories=tuple(config.categories), event=metric_texts.event, response_type=response,
        urgency=urgency, severity=cap_severity, certainty=_certainty(record.kind), effective=sent,
        onset=record.opened_at if phase == "active" and not forecast else None, expires=expires,
        sender_name=texts.sender_name, headline=headline, description=description, instruction=instruction,
        web=f"{base_url}/" if base_url else None, parameters=tuple(parameters),
        area_desc=texts.area.format_map(fields), circle=circle)


def _certainty(kind: str) -> str:
    """Threshold alerts are measurements (Observed); a forecast is a projection (Likely), an outlier a
    statistical suspicion (Possible)."""
    return {AlertKind.FORECAST.value: "Likely", AlertKind.OUTLIER.value: "Possible"}.get(kind, "Observed")
