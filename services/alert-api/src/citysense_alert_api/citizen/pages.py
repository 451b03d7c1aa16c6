"""The small HTML pages behind the links in citizens' email, in English and German.

Opening a link (GET) only shows a page with a button; the button's POST makes the change. Mail scanners and link
previews fetch links, so a GET that confirmed or unsubscribed would act without the citizen. The pages carry no
script and no inline style (the API's Content-Security-Policy allows neither); their stylesheet is served by the
citizen routes.
"""

from __future__ import annotations

from html import escape
from typing import Literal

from starlette.responses import HTMLResponse

Language = Literal["en", "de"]
LANGUAGES: tuple[Language, ...] = ("en", "de")

STYLESHEET = """\
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 3rem auto; padding: 0 1rem; color: #1b1b1b;
       line-height: 1.5; }
h1 { font-size: 1.4rem; }
button { font: inherit; padding: .6rem 1.2rem; border: 0; border-radius: .3rem; background: #0b57a4;
         color: #fff; cursor: pointer; }
button:focus-visible { outline: 3px solid #e8a200; outline-offset: 2px; }
.error { border-left: .3rem solid #b3261e; padding-left: .8rem; }
a { color: #0b57a4; }
"""

TEXTS: dict[str, dict[Language, str]] = {
    "confirm_title": {"en": "Confirm your warnings", "de": "Warnungen bestätigen"},
    "confirm_lead": {
        "en": "Press the button to start receiving air-quality and environment warnings for your area by email.",
        "de": "Drücken Sie die Schaltfläche, um Warnungen zu Luftqualität und Umwelt für Ihr Gebiet per E-Mail zu "
              "erhalten."},
    "confirm_button": {"en": "Confirm", "de": "Bestätigen"},
    "confirmed_title": {"en": "Warnings confirmed", "de": "Warnungen bestätigt"},
    "confirmed_lead": {
        "en": "You will get an email when a warning applies to your area. Every email has a link to unsubscribe.",
        "de": "Sie erhalten eine E-Mail, wenn eine Warnung Ihr Gebiet betrifft. Jede E-Mail enthält einen Link zum "
              "Abmelden."},
    "unsubscribe_title": {"en": "Stop the warnings", "de": "Warnungen abbestellen"},
    "unsubscribe_lead": {"en": "Press the button to stop the warning emails for this area.",
                         "de": "Drücken Sie die Schaltfläche, um die Warn-E-Mails für dieses Gebiet abzubestellen."},
    "unsubscribe_button": {"en": "Unsubscribe", "de": "Abbestellen"},
    "unsubscribed_title": {"en": "Unsubscribed", "de": "Abbestellt"},
    "unsubscribed_lead": {"en": "You will get no more warning emails for this area.",
                          "de": "Sie erhalten keine Warn-E-Mails für dieses Gebiet mehr."},
    "error_title": {"en": "This link does not work", "de": "Dieser Link funktioniert nicht"},
    "invalid": {"en": "The link is incomplete, was changed, or was not issued by this service. Copy the whole link "
                      "from the email, or subscribe again.",
                "de": "Der Link ist unvollständig, wurde verändert oder stammt nicht von diesem Dienst. Kopieren Sie "
                      "den ganzen Link aus der E-Mail oder melden Sie sich erneut an."},
    "expired": {"en": "The link has expired. Subscribe again on the map to get a new one.",
                "de": "Der Link ist abgelaufen. Melden Sie sich auf der Karte erneut an, um einen neuen zu erhalten."},
    "wrong_purpose": {"en": "This link belongs to another step. Use the link from the email for this step.",
                      "de": "Dieser Link gehört zu einem anderen Schritt. Verwenden Sie den passenden Link aus der "
                            "E-Mail."},
    "gone": {"en": "This subscription does not exist (any more): it was unsubscribed, or not confirmed in time. "
                   "Subscribe again on the map.",
             "de": "Dieses Abonnement besteht nicht (mehr): Es wurde abbestellt oder nicht rechtzeitig bestätigt. "
                   "Melden Sie sich auf der Karte erneut an."},
    "back": {"en": "To the map", "de": "Zur Karte"},
}


def text(key: str, language: Language) -> str:
    return TEXTS[key][language]


def pick_language(preferred: str | None, accept_language: str | None = None) -> Language:
    """The subscription's language when known, else the browser's first of de/en, else English."""
    if preferred in LANGUAGES:
        return preferred  # type: ignore[return-value]
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code  # type: ignore[return-value]
    return "en"


def _page(language: Language, title: str, body: str, status: int) -> HTMLResponse:
    html = (
        f'<!doctype html>\n<html lang="{language}">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{escape(title)} – citysense</title>\n"
        '<link rel="stylesheet" href="/citizen/pages.css">\n</head>\n<body>\n<main>\n'
        f"<h1>{escape(title)}</h1>\n{body}\n"
        f'<p><a href="/">{escape(text("back", language))}</a></p>\n</main>\n</body>\n</html>\n'
    )
    # The token is in the URL: keep the page out of caches (Referrer-Policy: no-referrer is set for every response).
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"})


def action_page(step: Literal["confirm", "unsubscribe"], token: str, language: Language) -> HTMLResponse:
    """The page a link opens: what the button will do, and the button (a form POST with the token)."""
    action = "/v1/citizen/subscriptions/confirm" if step == "confirm" else "/v1/citizen/unsubscribe"
    body = (
        f"<p>{escape(text(f'{step}_lead', language))}</p>\n"
        f'<form method="post" action="{action}">\n'
        f'<input type="hidden" name="token" value="{escape(token)}">\n'
        f'<input type="hidden" name="lang" value="{language}">\n'
        f'<button type="submit">{escape(text(f"{step}_button", language))}</button>\n</form>'
    )
    return _page(language, text(f"{step}_title", language), body, 200)


def done_page(step: Literal["confirmed", "unsubscribed"], language: Language) -> HTMLResponse:
    return _page(language, text(f"{step}_title", language), f"<p>{escape(text(f'{step}_lead', language))}</p>", 200)


def error_page(reason: Literal["invalid", "expired", "wrong_purpose", "gone"], language: Language,
               status: int = 400) -> HTMLResponse:
    body = f'<p class="error">{escape(text(reason, language))}</p>'
    return _page(language, text("error_title", language), body, status)
