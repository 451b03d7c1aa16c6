"""CAP 1.2 messages and the Atom feed as XML, element order as the CAP 1.2 schema's sequences require."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

from citysense_alert_api.cap.messages import CapMessage, Info

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MEDIA_TYPE = "application/cap+xml"
ATOM_MEDIA_TYPE = "application/atom+xml"
FEEDS = uuid.UUID("0d7f3b8e-2c4a-5e61-8b9d-3f5a7c9e1b2d")  # namespace of the feed's id (UUID v5 of the sender)


def cap_time(moment: datetime) -> str:
    """CAP 1.2 dateTime: seconds and a numeric offset; UTC is written ``-00:00`` ("Z" is not allowed)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "-00:00"


def atom_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def references_text(message: CapMessage) -> str:
    """``sender,identifier,sent`` of each earlier message, separated by spaces (CAP 1.2 <references>)."""
    return " ".join(f"{ref.sender},{ref.identifier},{cap_time(ref.sent)}" for ref in message.references)


def _add(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, name, attrs)
    if text is not None:
        element.text = text
    return element


def _info(parent: ET.Element, info: Info) -> None:
    def add(name: str, text: str | None = None) -> ET.Element:
        return _add(element, name, text)

    element = _add(parent, "info")
    add("language", info.language)
    for category in info.categories:
        add("category", category)
    add("event", info.event)
    add("responseType", info.response_type)
    add("urgency", info.urgency)
    add("severity", info.severity)
    add("certainty", info.certainty)
    add("effective", cap_time(info.effective))
    if info.onset is not None:
        add("onset", cap_time(info.onset))
    add("expires", cap_time(info.expires))
    add("senderName", info.sender_name)
    add("headline", info.headline)
    add("description", info.description)
    add("instruction", info.instruction)
    if info.web:
        add("web", info.web)
    for name, value in info.parameters:
        parameter = add("parameter")
        _add(parameter, "valueName", name)
        _add(parameter, "value", value)
    area = add("area")
    _add(area, "areaDesc", info.area_desc)
    if info.circle:
        _add(area, "circle", info.circle)


def cap_element(message: CapMessage) -> ET.Element:
    root = ET.Element("alert", xmlns=CAP_NS)
    _add(root, "identifier", message.identifier)
    _add(root, "sender", message.sender)
    _add(root, "sent", cap_time(message.sent))
    _add(root, "status", message.status)
    _add(root, "msgType", message.msg_type)
    if message.source:
        _add(root, "source", message.source)
    _add(root, "scope", "Public")
    if message.references:
        _add(root, "references", references_text(message))
    if message.incidents:
        _add(root, "incidents", message.incidents)
    for info in message.infos:
        _info(root, info)
    return root


def _serialize(root: ET.Element) -> bytes:
    """The elements are built with plain names under a root carrying ``xmlns``: the document's one namespace."""
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def cap_xml(message: CapMessage) -> bytes:
    return _serialize(cap_element(message))


def message_url(base_url: str, alert_id: str) -> str:
    return f"{base_url}/v1/cap/alerts/{quote(alert_id, safe='')}.xml"


def atom_feed(messages: Sequence[CapMessage], *, sender: str, title: str, author: str, base_url: str,
              now: datetime) -> bytes:
    """An Atom 1.0 feed with one entry per current message, newest first, each linking to its CAP document.

    An entry's id is the message's identifier, so a changed alert is a new entry. The feed's ``updated`` is its
    newest message's ``sent`` (``now`` when it is empty)."""
    root = ET.Element("feed", xmlns=ATOM_NS)
    _add(root, "id", f"urn:uuid:{uuid.uuid5(FEEDS, sender)}")
    _add(root, "title", title)
    newest = max((m.sent for m in messages), default=now)
    _add(root, "updated", atom_time(newest))
    _add(_add(root, "author"), "name", author)
    _add(root, "link", rel="self", type=ATOM_MEDIA_TYPE, href=f"{base_url}/v1/cap/alerts.atom")
    _add(root, "link", rel="alternate", type="text/html", href=f"{base_url}/")
    for message in messages:
        first = message.infos[0]
        entry = _add(root, "entry")
        _add(entry, "id", f"urn:uuid:{message.identifier}")
        _add(entry, "title", first.headline)
        _add(entry, "updated", atom_time(message.sent))
        _add(entry, "link", rel="alternate", type=CAP_MEDIA_TYPE,
             href=message_url(base_url, message.alert_id))
        _add(entry, "summary", first.description)
        _add(entry, "category", term=message.msg_type, label=f"CAP msgType {message.msg_type}")
    return _serialize(root)
