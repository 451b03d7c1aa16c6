"""The emails themselves: plain text and HTML with the same content, every inserted value escaped in the HTML.

An email names one subscription only (its address, circle and level) and carries that subscription's own
unsubscribe link in the body and in ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` (RFC 8058 one-click).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from html import escape

from citysense_common.citizen.settings import CitizenSettings
from citysense_common.store import AreaSubscription
from citysense_common.warnings.texts import WarningText

# The words around the warning texts, which come from config/cap.yaml. Keys: the subscription's language.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "confirm_subject": "Please confirm your environmental warnings",
        "confirm_intro": "Someone, hopefully you, asked for email warnings at this address for the area within "
                         "{radius} km of {lat}, {lon}, from the level \"{level}\" up.",
        "confirm_action": "Confirm the subscription",
        "confirm_expiry": "The link is valid for {hours} hours. If you did not ask for this, ignore this email: "
                          "without confirmation nothing more is sent.",
        "what_to_do": "What to do",
        "area": "Area",
        "your_area": "Your subscription",
        "your_area_text": "{radius} km around {lat}, {lon}, from the level \"{level}\" up",
        "map": "Live map",
        "footer": "You receive this email because this address subscribed to environmental warnings.",
        "unsubscribe": "Unsubscribe",
        "levels": "info=Notice|warning=Warning|critical=Severe warning",
    },
    "de": {
        "confirm_subject": "Bitte bestätigen Sie Ihre Umweltwarnungen",
        "confirm_intro": "Jemand, hoffentlich Sie, hat für diese Adresse Warnungen per E-Mail für den Umkreis von "
                         "{radius} km um {lat}, {lon} ab der Stufe „{level}“ bestellt.",
        "confirm_action": "Bestellung bestätigen",
        "confirm_expiry": "Der Link gilt {hours} Stunden. Wenn Sie das nicht waren, ignorieren Sie diese E-Mail: "
                          "ohne Bestätigung wird nichts weiter gesendet.",
        "what_to_do": "Was tun",
        "area": "Gebiet",
        "your_area": "Ihre Bestellung",
        "your_area_text": "{radius} km um {lat}, {lon}, ab der Stufe „{level}“",
        "map": "Aktuelle Karte",
        "footer": "Sie erhalten diese E-Mail, weil diese Adresse Umweltwarnungen bestellt hat.",
        "unsubscribe": "Abbestellen",
        "levels": "info=Hinweis|warning=Warnung|critical=Unwetterartige Warnung",
    },
}


def words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["en"])


def level_name(severity: str, language: str) -> str:
    names = dict(pair.split("=", 1) for pair in words(language)["levels"].split("|"))
    return names.get(severity, severity)


@dataclass(frozen=True)
class Links:
    """The absolute links of one email, all for the one subscription it goes to."""

    home: str  # the citizen map
    unsubscribe_page: str  # GET: a page with a button (link scanners change nothing)
    unsubscribe_one_click: str  # POST target of List-Unsubscribe-Post (RFC 8058)
    confirm_page: str | None = None


def links(citizen: CitizenSettings, unsubscribe_token: str, confirm_token: str | None = None) -> Links:
    return Links(home=f"{citizen.public_url}/", unsubscribe_page=citizen.link("unsubscribe", unsubscribe_token),
                 unsubscribe_one_click=citizen.one_click_unsubscribe_url(unsubscribe_token),
                 confirm_page=None if confirm_token is None else citizen.link("confirm", confirm_token))


def _coordinate(value: float) -> str:
    return f"{value:.5f}".rstrip("0").rstrip(".")


def _area_fields(sub: AreaSubscription) -> dict[str, str]:
    return {"radius": f"{sub.radius_km:g}", "lat": _coordinate(sub.lat), "lon": _coordinate(sub.lon),
            "level": level_name(sub.min_severity, sub.language)}


def _envelope(sub: AreaSubscription, from_address: str, subject: str, link: Links, now: datetime) -> EmailMessage:
    name, address = parseaddr(from_address)
    message = EmailMessage()
    message["From"] = Address(display_name=name, addr_spec=address)
    message["To"] = sub.email
    message["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    message["Date"] = format_datetime(now.astimezone(UTC))
    message["List-Unsubscribe"] = f"<{link.unsubscribe_one_click}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
    return message


def _html(language: str, title: str, blocks: list[str], link: Links) -> str:
    w = words(language)
    return (f'<!DOCTYPE html>\n<html lang="{escape(language)}"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title></head>\n<body style=\"font-family:sans-serif;max-width:40em\">\n"
            f"<h1 style=\"font-size:1.3em\">{escape(title)}</h1>\n" + "\n".join(blocks) +
            f'\n<hr>\n<p style="font-size:.9em">{escape(w["footer"])} '
            f'<a href="{escape(link.unsubscribe_page)}">{escape(w["unsubscribe"])}</a></p>\n</body></html>\n')


def _footer(language: str, link: Links) -> str:
    w = words(language)
    return f"--\n{w['footer']}\n{w['unsubscribe']}: {link.unsubscribe_page}\n"


def confirmation_email(sub: AreaSubscription, link: Links, *, from_address: str, confirm_hours: float,
                       now: datetime) -> EmailMessage:
    """The double opt-in: what was asked for, and the link to the confirmation page."""
    assert link.confirm_page is not None
    w = words(sub.language)
    fields = _area_fields(sub)
    intro = w["confirm_intro"].format_map(fields)
    expiry = w["confirm_expiry"].format(hours=f"{confirm_hours:g}")
    message = _envelope(sub, from_address, w["confirm_subject"], link, now)
    message.set_content(f"{intro}\n\n{w['confirm_action']}:\n{link.confirm_page}\n\n{expiry}\n\n"
                        + _footer(sub.language, link), cte="quoted-printable")
    message.add_alternative(_html(sub.language, w["confirm_subject"], [
        f"<p>{escape(intro)}</p>",
        f'<p><a href="{escape(link.confirm_page)}" style="font-weight:bold">{escape(w["confirm_action"])}</a></p>',
        f"<p>{escape(expiry)}</p>",
    ], link), subtype="html", cte="quoted-printable")
    message["Content-Language"] = sub.language  # after the content: setting it clears Content-* headers
    return message


def warning_email(sub: AreaSubscription, text: WarningText, link: Links, *, from_address: str,
                  now: datetime) -> EmailMessage:
    """A warning, an all-clear or a withdrawal (``text`` says which): the CAP ``info`` of the alert in the
    subscription's language, plus what the subscription itself is."""
    w = words(sub.language)
    mine = w["your_area_text"].format_map(_area_fields(sub))
    message = _envelope(sub, from_address, text.headline, link, now)
    message.set_content(
        f"{text.headline}\n\n{text.description}\n\n{w['what_to_do']}: {text.instruction}\n\n"
        f"{w['area']}: {text.area}\n{w['your_area']}: {mine}\n{w['map']}: {link.home}\n\n"
        + _footer(sub.language, link), cte="quoted-printable")
    message.add_alternative(_html(sub.language, text.headline, [
        f"<p>{escape(text.description)}</p>",
        f"<p><strong>{escape(w['what_to_do'])}:</strong> {escape(text.instruction)}</p>",
        f"<p><strong>{escape(w['area'])}:</strong> {escape(text.area)}<br>"
        f"<strong>{escape(w['your_area'])}:</strong> {escape(mine)}</p>",
        f'<p><a href="{escape(link.home)}">{escape(w["map"])}</a></p>',
    ], link), subtype="html", cte="quoted-printable")
    message["Content-Language"] = sub.language  # after the content: setting it clears Content-* headers
    return message
