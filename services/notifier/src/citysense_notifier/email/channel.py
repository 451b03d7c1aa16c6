"""What the notifier does with email: confirmation requests from the API, and warnings for alert events.

Recipients of a warning: confirmed area subscriptions whose circle covers the station and whose lowest level is at
or below the alert's severity. An all-clear (or a withdrawal) goes to exactly those who were sent a warning about
the alert, whatever its severity is by then. Every email goes to one address.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from citysense_common.citizen.area import covers
from citysense_common.citizen.mail import MailRequest, MailRequestError
from citysense_common.citizen.settings import CitizenSettings
from citysense_common.citizen.tokens import issue
from citysense_common.contract import AlertEvent, Severity
from citysense_common.store import AlertRecord, AreaSubscription, Delivery, Store
from citysense_common.warnings.config import PublicWarnings
from citysense_common.warnings.texts import Phase, phase_of, warning_text

from citysense_notifier.email.delivery import EVENT_TYPE_PREFIX, EmailDeliverer
from citysense_notifier.email.render import Links, confirmation_email, links, warning_email
from citysense_notifier.metrics import NotifierMetrics

log = logging.getLogger("citysense.notifier.email")
_SEVERITY_ORDER = {s.value: i for i, s in enumerate(Severity)}  # info < warning < critical
CONFIRM_TYPE = EVENT_TYPE_PREFIX + "confirm"
WARNED_TYPES = frozenset({EVENT_TYPE_PREFIX + "warning"})


def event_type(phase: Phase) -> str:
    return EVENT_TYPE_PREFIX + {"active": "warning", "all_clear": "all_clear", "cancel": "cancel"}[phase]


def email_event_id(alert_id: str, event_id: str) -> str:
    """The delivery log's event id of an alert email: the alert first, so an all-clear finds its warnings."""
    return f"{alert_id}/{event_id}"


def language_key(warnings: PublicWarnings, language: str) -> str:
    """The ``config/cap.yaml`` language for a subscription's ``en``/``de``: same primary tag, else the first."""
    for key in warnings.config.languages:
        if key.split("-")[0].lower() == language.lower():
            return key
    return next(iter(warnings.config.languages))


class ConfirmedAreas:
    """Confirmed area subscriptions, reloaded at most every ``refresh_s`` (a new confirmation applies within it)."""

    def __init__(self, store: Store, refresh_s: float) -> None:
        self._store, self._refresh_s = store, refresh_s
        self._loaded_at = -1e9
        self._items: list[AreaSubscription] = []

    async def all(self) -> list[AreaSubscription]:
        if time.monotonic() - self._loaded_at > self._refresh_s:
            self._items = await asyncio.to_thread(self._store.list_area_subscriptions, "confirmed")
            self._loaded_at = time.monotonic()
        return self._items


class EmailChannel:
    def __init__(self, store: Store, deliverer: EmailDeliverer, citizen: CitizenSettings, secret: str,
                 warnings: PublicWarnings | None, metrics: NotifierMetrics, *, from_address: str,
                 refresh_s: float) -> None:
        self.store, self.deliverer, self.citizen, self.warnings = store, deliverer, citizen, warnings
        self.metrics, self.from_address = metrics, from_address
        self._secret = secret
        self.areas = ConfirmedAreas(store, refresh_s)
        self._latest: dict[str, asyncio.Future[None]] = {}  # per alert: when its newest event's emails are settled

    def _links(self, sub: AreaSubscription, now: datetime, *, confirm: bool = False) -> Links:
        c = self.citizen
        unsubscribe = issue("unsubscribe", sub.id, self._secret, now, c.token_lifetime("unsubscribe"))
        confirm_token = issue("confirm", sub.id, self._secret, now, c.token_lifetime("confirm")) if confirm else None
        return links(c, unsubscribe, confirm_token)

    async def on_mail_request(self, raw: bytes) -> bool:
        """A confirmation email for a pending subscription; True once settled (sent, dead, or nothing to send)."""
        try:
            request = MailRequest.decode(raw)
        except MailRequestError as exc:
            self.metrics.events.labels("citizen-mail", "malformed").inc()
            log.error("skipping a citizen mail request: %s", exc)
            return True
        self.metrics.events.labels("citizen-mail", "ok").inc()
        sub = await asyncio.to_thread(self.store.get_area_subscription, request.subscription_id)
        if sub is None or sub.status != "pending":
            log.info("no confirmation email for area subscription %s: %s", request.subscription_id,
                     "removed" if sub is None else "already confirmed")
            return True
        now = datetime.now(UTC)
        message = confirmation_email(sub, self._links(sub, now, confirm=True), from_address=self.from_address,
                                     confirm_hours=self.citizen.confirm_hours, now=now)
        return await self.deliverer.first_attempt(sub.id, "confirm", CONFIRM_TYPE, message) is not None

    def on_alert(self, event: AlertEvent) -> asyncio.Task[bool]:
        """Warning, all-clear or withdrawal emails for one alert event; the task's result is True once every one is
        settled. Called in consumption order (before the caller's first await): the events of one alert are handled
        in that order, so an all-clear never overtakes the warning it follows, even when both are consumed at once
        (a replay after a restart)."""
        previous = self._latest.get(event.alert_id)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._latest[event.alert_id] = done
        return asyncio.create_task(self._after(previous, done, event))

    async def _after(self, previous: asyncio.Future[None] | None, done: asyncio.Future[None],
                     event: AlertEvent) -> bool:
        try:
            if previous is not None:
                await previous
            return await self._on_alert(event)
        finally:
            done.set_result(None)
            if self._latest.get(event.alert_id) is done:
                del self._latest[event.alert_id]

    async def _on_alert(self, event: AlertEvent) -> bool:
        if self.warnings is None:
            return True
        record = AlertRecord.of(event)
        phase = phase_of(record, self.warnings)
        if phase is None:
            self.metrics.email_skipped.labels("not_public").inc()
            return True
        lat, lon = record.lat, record.lon
        if lat is None or lon is None:
            station = await asyncio.to_thread(self.store.get_station, record.station_id)
            lat, lon = (station.lat, station.lon) if station is not None else (None, None)
        if lat is None or lon is None:
            self.metrics.email_skipped.labels("no_location").inc()
            log.warning("no email for alert %s: station %s has no known position", record.alert_id,
                        record.station_id)
            return True
        covering = [sub for sub in await self.areas.all() if covers(sub, lat, lon)]
        if phase == "active":
            level = _SEVERITY_ORDER.get(record.severity, -1)
            recipients = [sub for sub in covering if _SEVERITY_ORDER.get(sub.min_severity, 99) <= level]
        else:
            warned = await asyncio.gather(*(self._was_warned(sub, record.alert_id) for sub in covering))
            recipients = [sub for sub, yes in zip(covering, warned, strict=True) if yes]
        # The cached areas may be up to refresh_s old: whoever unsubscribed (or was replaced) meanwhile gets nothing.
        current = await asyncio.gather(*(asyncio.to_thread(self.store.get_area_subscription, sub.id)
                                         for sub in recipients))
        recipients = [sub for sub in current if sub is not None and sub.status == "confirmed"]
        now = datetime.now(UTC)
        jobs = []
        for sub in recipients:
            text = warning_text(record, self.warnings, phase, language_key(self.warnings, sub.language))
            message = warning_email(sub, text, self._links(sub, now), from_address=self.from_address, now=now)
            jobs.append(self.deliverer.first_attempt(sub.id, email_event_id(record.alert_id, event.event_id),
                                                     event_type(phase), message, event.event_time))
        results: list[Delivery | None] = await asyncio.gather(*jobs)
        return all(result is not None for result in results)

    async def _was_warned(self, sub: AreaSubscription, alert_id: str) -> bool:
        """Whether this subscription was sent (or is being sent) a warning about the alert."""
        page = await asyncio.to_thread(self.store.list_deliveries, sub.id, 100)
        prefix = email_event_id(alert_id, "")
        return any(d.event_id.startswith(prefix) and d.event_type in WARNED_TYPES and d.status != "dead"
                   for d in page.items)
