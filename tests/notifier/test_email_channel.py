"""Citizens' email from alert events and confirmation requests, sent to a real SMTP server on loopback with a real
SQLite store: who gets which email (the circle, the lowest level, only public alerts, the all-clear to those warned),
English and German with the CAP feed's words, the links and headers, and escaping of hostile text in the HTML."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import uuid
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from citysense_common.citizen.mail import MailRequest
from citysense_common.citizen.settings import load_citizen_settings
from citysense_common.citizen.tokens import verify
from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
from citysense_common.store import AreaSubscription, Store
from citysense_notifier.delivery import Parked, RetryPolicy
from citysense_notifier.email.channel import EmailChannel
from citysense_notifier.email.delivery import EmailDeliverer
from citysense_notifier.email.smtp import SmtpTransport
from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.settings import build_settings

REPO = Path(__file__).resolve().parents[2]
SECRET = "x" * 8 + "test-secret-for-links-0123456789"
PUBLIC_URL = "https://air.example.org"
STATION = (48.8566, 2.3522)  # Paris, Hôtel de Ville
AT_STATION = Location(lat=STATION[0], lon=STATION[1])


@dataclasses.dataclass
class Rig:
    channel: EmailChannel
    store: Store
    parked: list[Parked]
    metrics: NotifierMetrics

    def run(self, coro):  # noqa: ANN001, ANN201
        return asyncio.run(coro)

    def alert(self, *events: AlertEvent) -> list[bool]:
        """Hand the events to the channel in this order, at once (as the notifier does within one poll)."""
        async def handle() -> list[bool]:
            return list(await asyncio.gather(*[self.channel.on_alert(event) for event in events]))
        return self.run(handle())


def rig(store: Store, smtp_port: int, refresh_s: float = 0, **smtp: object) -> Rig:
    settings = build_settings(smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_security="none",
                              smtp_from_address="Air quality <alerts@air.example.org>", smtp_timeout_s=5,
                              cap_file=REPO / "config/cap.yaml", rules_file=REPO / "config/rules.yaml",
                              metrics_file=REPO / "config/metrics.yaml", **smtp)
    metrics = NotifierMetrics()
    parked: list[Parked] = []

    async def park(p: Parked) -> None:
        parked.append(p)

    deliverer = EmailDeliverer(store, SmtpTransport(settings), RetryPolicy(3, 60, 0.05, 0.1), metrics, park=park)
    citizen = load_citizen_settings(public_url=PUBLIC_URL, secret=SECRET)
    channel = EmailChannel(store, deliverer, citizen, SECRET, settings.public_warnings(), metrics,
                           from_address=settings.smtp_from_address, refresh_s=refresh_s)
    return Rig(channel, store, parked, metrics)


def subscribe(store: Store, email: str, *, lat: float = STATION[0], lon: float = STATION[1], radius_km: float = 2,
              min_severity: str = "warning", language: str = "en", status: str = "confirmed") -> AreaSubscription:
    sub = AreaSubscription(id=f"as_{uuid.uuid4().hex[:20]}", email=email, lat=lat, lon=lon, radius_km=radius_km,
                           min_severity=min_severity, language=language, status=status,  # type: ignore[arg-type]
                           created_at=datetime.now(UTC))
    store.create_area_subscription(sub)
    return sub


def alert(state: AlertState = AlertState.OPEN, *, severity: Severity = Severity.CRITICAL, threshold: float = 125.4,
          value: float = 140.3, kind: AlertKind = AlertKind.THRESHOLD, rule_id: str = "pm25-epa-aqi-1h",
          station_id: str = "st-042", alert_id: str = "al-1", message: str = "PM2.5 1-hour mean 140.3 µg/m³",
          location: Location | None = AT_STATION) -> AlertEvent:
    now = datetime.now(UTC)
    return AlertEvent(event_id=f"ev-{uuid.uuid4().hex[:12]}", alert_id=alert_id, state=state, kind=kind,
                      severity=severity, rule_id=rule_id, station_id=station_id, location=location,
                      metric="pm2_5", value=value, threshold=threshold, window="1h",
                      opened_at=now if state is AlertState.OPEN else now - timedelta(minutes=5), event_time=now,
                      message=message,
                      resolved_at=now if state is AlertState.RESOLVED else None)


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


def test_a_warning_reaches_the_subscriber_whose_circle_covers_the_station(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    inside = subscribe(store, "near@example.org", lat=48.87, lon=2.35, radius_km=2)  # 1.5 km from the station
    subscribe(store, "far@example.org", lat=48.90, lon=2.35, radius_km=2)  # 4.8 km away: outside
    subscribe(store, "pending@example.org", status="pending")  # never confirmed
    subscribe(store, "critical-only@example.org", min_severity="critical")
    subscribe(store, "calm@example.org", min_severity="critical")
    event = alert(severity=Severity.WARNING, threshold=55.4, value=60.2)
    assert r.alert(event) == [True]
    (message,) = server.wait_for(1)
    assert server.envelopes == [("alerts@air.example.org", ["near@example.org"])]
    assert message["To"] == "near@example.org"
    assert message["Subject"] == "Air pollution (PM2.5): Unhealthy at station st-042"
    plain, html = parts(message)
    for body in (plain, html):
        assert "60.2 µg/m³" in body and "US EPA AQI" in body
        assert "avoid prolonged or heavy exertion outdoors" in body  # the band's health advice
        assert "Around measuring station st-042 (radius 2 km)" in body
        assert "2 km around 48.87, 2.35" in body  # the subscriber's own area, and no one else's
        for other in ("far@", "pending@", "critical-only@", "calm@"):
            assert other not in body
    delivery = store.get_delivery(inside.id, f"al-1/{event.event_id}")
    assert delivery is not None and delivery.status == "delivered" and delivery.event_type == "citysense.email.warning"
    # A critical update reaches those who asked for critical only, too.
    assert r.alert(alert(severity=Severity.CRITICAL, threshold=125.4)) == [True]
    server.wait_for(4)
    assert sorted(to for _, (to,) in server.envelopes[1:]) == ["calm@example.org", "critical-only@example.org",
                                                                "near@example.org"]


def test_no_email_after_the_unsubscribe_even_before_the_areas_reload(store: Store, smtp_server) -> None:  # noqa: ANN001
    """The confirmed areas are cached between reloads; an address unsubscribed meanwhile gets nothing more."""
    server = smtp_server()
    r = rig(store, server.port, refresh_s=3600)
    stays = subscribe(store, "stays@example.org")
    leaves = subscribe(store, "leaves@example.org")
    assert r.alert(alert(severity=Severity.WARNING, threshold=55.4, value=60.2)) == [True]
    server.wait_for(2)
    assert store.delete_area_subscription(leaves.id)
    assert r.alert(alert(severity=Severity.CRITICAL)) == [True]
    server.wait_for(3)
    assert sorted(to for _, (to,) in server.envelopes) == ["leaves@example.org", "stays@example.org",
                                                           "stays@example.org"]
    assert store.get_area_subscription(stays.id) is not None


def test_every_email_has_its_own_unsubscribe_link_and_headers(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    a, b = subscribe(store, "a@example.org"), subscribe(store, "b@example.org")
    assert r.alert(alert()) == [True]
    messages = {m["To"]: m for m in server.wait_for(2)}
    now = datetime.now(UTC)
    for sub in (a, b):
        message = messages[sub.email]
        header = message["List-Unsubscribe"]
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        one_click = re.fullmatch(r"<(.+)>", header)
        assert one_click is not None and one_click.group(1).startswith(f"{PUBLIC_URL}/v1/citizen/unsubscribe?token=")
        token = parse_qs(urlsplit(one_click.group(1)).query)["token"][0]
        assert verify(token, "unsubscribe", SECRET, now) == sub.id
        plain, html = parts(message)
        page = f"{PUBLIC_URL}/citizen/unsubscribe?token={token}"
        assert page in plain and page.replace("&", "&amp;") in html
        assert message["Message-ID"] and message["Auto-Submitted"] == "auto-generated"
    assert messages[a.email]["Message-ID"] != messages[b.email]["Message-ID"]


def test_german_subscribers_read_german(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "de@example.org", language="de")
    assert r.alert(alert()) == [True]
    (message,) = server.wait_for(1)
    assert message["Subject"] == "Luftverschmutzung (PM2,5): Sehr ungesund an der Messstation st-042"
    assert message["Content-Language"] == "de"
    plain, html = parts(message)
    assert "140,3 µg/m³" in plain and "Was tun:" in plain and "jede körperliche Aktivität im Freien vermeiden" in plain
    assert "Ihre Bestellung: 2 km um 48.8566, 2.3522, ab der Stufe „Warnung“" in plain
    assert '<html lang="de">' in html and "Abbestellen" in html


def test_hostile_text_is_escaped_in_the_html(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "x@example.org")
    hostile = '<script>alert(1)</script><a href="https://evil.example">click</a> & "quotes"'
    # An unknown rule: the description carries the alert's own message text.
    assert r.alert(alert(rule_id="custom-rule", message=hostile)) == [True]
    (message,) = server.wait_for(1)
    plain, html = parts(message)
    assert hostile in plain  # plain text is shown as text
    assert "<script>" not in html and "evil.example\">" not in html and "<a href=\"https://evil" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&amp; &quot;quotes&quot;" in html


def test_a_station_id_cannot_inject_markup(store: Store, smtp_server) -> None:  # noqa: ANN001
    """Station ids are restricted by the contract; the HTML escapes them anyway (the store may hold older ones)."""
    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "x@example.org")
    event = alert().model_copy(update={"station_id": '"><img src=x onerror=alert(1)>'})
    assert r.alert(event) == [True]
    (message,) = server.wait_for(1)
    _, html = parts(message)
    assert "<img" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


@pytest.mark.parametrize("kind", [AlertKind.SENSOR_FAULT, AlertKind.STATION_OFFLINE, AlertKind.OUTLIER])
def test_alerts_about_the_network_send_nothing(store: Store, smtp_server, kind: AlertKind) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "x@example.org", min_severity="info")
    assert r.alert(alert(kind=kind, rule_id="station-health")) == [True]
    assert r.alert(alert(severity=Severity.INFO, threshold=35.4)) == [True]  # below the public level
    assert r.metrics.email_skipped.labels("not_public")._value.get() == 2
    assert server.messages == []


def test_the_resolve_sends_the_all_clear_to_those_warned(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    warned = subscribe(store, "warned@example.org", language="de")
    subscribe(store, "critical-only@example.org", min_severity="critical")  # never warned about this alert
    assert r.alert(alert(severity=Severity.WARNING, threshold=55.4, value=60.2)) == [True]
    server.wait_for(1)
    late = subscribe(store, "late@example.org")  # subscribed after the warning: no all-clear either
    resolved = alert(AlertState.RESOLVED, severity=Severity.WARNING, threshold=55.4, value=20.0)
    assert r.alert(resolved) == [True]
    messages = server.wait_for(2)
    assert [to for _, (to,) in server.envelopes] == ["warned@example.org", "warned@example.org"]
    assert messages[1]["Subject"] == "Entwarnung: Luftverschmutzung (PM2,5) an der Messstation st-042"
    plain, _ = parts(messages[1])
    assert "Die Warnung ist beendet" in plain and "keine weiteren Vorsichtsmaßnahmen" in plain
    delivery = store.get_delivery(warned.id, f"al-1/{resolved.event_id}")
    assert delivery is not None and delivery.event_type == "citysense.email.all_clear"
    assert store.list_deliveries(late.id).items == []


def test_an_all_clear_consumed_with_its_warning_follows_it(store: Store, smtp_server) -> None:  # noqa: ANN001
    """A replay hands the open and the resolve over at once: the resolve waits for the warning's emails (here the
    open has more to do: its position comes from the store)."""
    from citysense_common.store import StationRecord

    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "x@example.org")
    store.upsert_stations([StationRecord("st-042", datetime.now(UTC), 1, {}, lat=STATION[0], lon=STATION[1])])
    opened = alert(severity=Severity.WARNING, threshold=55.4, value=60.2, location=None)
    assert r.alert(opened, alert(AlertState.RESOLVED, severity=Severity.WARNING, threshold=55.4)) == [True, True]
    subjects = [str(m["Subject"]) for m in server.wait_for(2)]
    assert subjects == ["Air pollution (PM2.5): Unhealthy at station st-042",
                        "All clear: Air pollution (PM2.5) at station st-042"]


def test_the_station_position_comes_from_the_store_when_the_event_has_none(store: Store, smtp_server) -> None:  # noqa: ANN001
    from citysense_common.store import StationRecord

    server = smtp_server()
    r = rig(store, server.port)
    subscribe(store, "x@example.org")
    assert r.alert(alert(location=None, station_id="st-unknown")) == [True]
    assert r.metrics.email_skipped.labels("no_location")._value.get() == 1
    store.upsert_stations([StationRecord("st-042", datetime.now(UTC), 1, {}, lat=STATION[0], lon=STATION[1])])
    assert r.alert(alert(location=None)) == [True]
    server.wait_for(1)


def test_a_confirmation_request_sends_the_signed_link(store: Store, smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    r = rig(store, server.port)
    sub = subscribe(store, "new@example.org", status="pending", language="de", radius_km=1.5, min_severity="info")
    subscribe(store, "other@example.org", status="pending")
    request = MailRequest(type="confirm", subscription_id=sub.id).encode()
    assert r.run(r.channel.on_mail_request(request))
    (message,) = server.wait_for(1)
    assert server.envelopes == [("alerts@air.example.org", ["new@example.org"])]
    assert message["Subject"] == "Bitte bestätigen Sie Ihre Umweltwarnungen"
    plain, html = parts(message)
    link = re.search(rf"{re.escape(PUBLIC_URL)}/citizen/confirm\?token=(\S+)", plain)
    assert link is not None
    assert verify(link.group(1), "confirm", SECRET, datetime.now(UTC)) == sub.id
    assert verify(link.group(1), "confirm", SECRET, datetime.now(UTC) + timedelta(hours=47)) == sub.id
    assert "1.5 km um 48.8566, 2.3522 ab der Stufe „Hinweis“" in plain and "48 Stunden" in plain
    assert link.group(0).replace("&", "&amp;") in html and message["List-Unsubscribe"]
    assert "other@" not in plain and "other@" not in html
    # Replayed, already confirmed or removed: nothing more is sent.
    assert r.run(r.channel.on_mail_request(request))
    store.update_area_subscription(dataclasses.replace(sub, status="confirmed"))
    assert r.run(r.channel.on_mail_request(MailRequest(type="confirm", subscription_id=sub.id).encode()))
    assert r.run(r.channel.on_mail_request(MailRequest(type="confirm", subscription_id="as_gone").encode()))
    assert r.run(r.channel.on_mail_request(b'{"type": "newsletter", "subscription_id": "x"}'))
    assert len(server.messages) == 1
