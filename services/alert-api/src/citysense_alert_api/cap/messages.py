"""An alert's current CAP 1.2 message, derived from its store record alone (see the package docstring)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from citysense_common.contract import AlertKind, Severity
from citysense_common.store import AlertRecord
from citysense_common.warnings.config import PublicWarnings
from citysense_common.warnings.texts import Phase, phase_of, warning_text

# Namespace of the message identifiers (UUID v5 of alert id, event key and re-issue number).
IDENTIFIERS = uuid.UUID("6f0c2d4e-8a1b-5c3d-9e7f-1a2b3c4d5e6f")
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


def build_message(record: AlertRecord, feed: PublicWarnings, now: datetime, base_url: str) -> CapMessage | None:
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
        msg_type = config.all_clear_msg_type if phase == "all_clear" else "Cancel"
        references.append(alert_ref)
    infos = tuple(_info(record, feed, phase, language, sent, expires, base_url) for language in config.languages)
    return CapMessage(
        alert_id=record.alert_id, identifier=message_id(record.alert_id, key, number), sender=sender, sent=sent,
        status=config.status, msg_type=msg_type, source=config.source, references=tuple(references),
        incidents=record.alert_id if _token(record.alert_id) else None, expires=expires, infos=infos)


def _token(value: str) -> bool:
    return bool(value) and not any(c.isspace() or c in ",<&" for c in value)


def _coordinate(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _info(record: AlertRecord, feed: PublicWarnings, phase: Phase, language: str, sent: datetime,
          expires: datetime, base_url: str) -> Info:
    """One ``<info>`` block: the shared warning texts plus what CAP adds (urgency, response, severity, area)."""
    config = feed.config
    text = warning_text(record, feed, phase, language)
    forecast = record.kind == AlertKind.FORECAST.value
    label = text.band_label
    try:
        severity: Severity | None = Severity(record.severity)
    except ValueError:
        severity = None
    cap_severity = (config.severity_by_band.get(label) if label else None) or (
        config.severity[severity] if severity else "Unknown")
    if phase == "active":
        urgency = "Expected" if forecast else "Immediate"
        response = "Prepare" if forecast else (config.response_type[severity] if severity else "Monitor")
    elif phase == "all_clear":
        urgency, response = "Past", "AllClear"
    else:
        urgency, response = "Past", "None"
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
        language=language, categories=tuple(config.categories), event=text.event, response_type=response,
        urgency=urgency, severity=cap_severity, certainty=_certainty(record.kind), effective=sent,
        onset=record.opened_at if phase == "active" and not forecast else None, expires=expires,
        sender_name=text.sender_name, headline=text.headline, description=text.description,
        instruction=text.instruction, web=f"{base_url}/" if base_url else None, parameters=tuple(parameters),
        area_desc=text.area, circle=circle)


def _certainty(kind: str) -> str:
    """Threshold alerts are measurements (Observed); a forecast is a projection (Likely), an outlier a
    statistical suspicion (Possible)."""
    return {AlertKind.FORECAST.value: "Likely", AlertKind.OUTLIER.value: "Possible"}.get(kind, "Observed")
