"""One email to one area subscription: an immediate attempt, then the retry lane, every state in the delivery log.

As for webhooks (:mod:`citysense_notifier.delivery`): a new email gets one attempt; one that fails for a reason
worth retrying is recorded ``retrying`` and parked on the retry topic, whose consumer attempts it again with
backoff until delivered or dead (``max_attempts``, ``max_age``, or a 5xx refusal). The parked message is the
rendered email itself, so a retry sends exactly what the first attempt tried, with the same ``Message-ID``
(derived from subscription and event, as the webhook id is). There is one SMTP server: a failure backs off every
email, not one subscriber's.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from citysense_common.store import Delivery, Store
from citysense_common.webhooks import webhook_id_for

from citysense_notifier.delivery import Parked, RetryPolicy, due_in
from citysense_notifier.email.smtp import SendResult, SmtpTransport
from citysense_notifier.metrics import NotifierMetrics

log = logging.getLogger("citysense.notifier.email")
EVENT_TYPE_PREFIX = "citysense.email."  # event_type of email deliveries in the log and on the retry topic


def is_email(event_type: str) -> bool:
    return event_type.startswith(EVENT_TYPE_PREFIX)


async def _never_parks(parked: Parked) -> None:
    raise RuntimeError("no retry lane configured")


@dataclass
class EmailDeliverer:
    store: Store
    transport: SmtpTransport
    policy: RetryPolicy
    metrics: NotifierMetrics
    park: Callable[[Parked], Awaitable[None]] = _never_parks
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    blocked_until: float = 0.0  # monotonic time before which no email is attempted (the server failed)
    _retrying: set[tuple[str, str]] = field(default_factory=set)

    async def _record(self, delivery: Delivery) -> None:
        await asyncio.to_thread(self.store.record_delivery, delivery)

    async def first_attempt(self, subscription_id: str, event_id: str, event_type: str, message: EmailMessage,
                            event_time: datetime | None = None) -> Delivery | None:
        """Send now, or park: the recorded state, or None when shutting down before anything was settled."""
        existing = await asyncio.to_thread(self.store.get_delivery, subscription_id, event_id)
        if existing is not None and existing.status in ("delivered", "dead"):
            return existing  # a replayed event that was already settled
        now = datetime.now(UTC)
        delivery = existing or Delivery(
            subscription_id=subscription_id, event_id=event_id, webhook_id=webhook_id_for(subscription_id, event_id),
            status="pending", attempts=0, created_at=now, updated_at=now, event_type=event_type)
        del message["Message-ID"]
        domain = str(message["From"].addresses[0].domain) if message["From"] else "localhost"
        message["Message-ID"] = f"<{delivery.webhook_id}@{domain or 'localhost'}>"
        if existing is None:
            await self._record(delivery)
        parked = Parked(subscription_id, event_id, event_type, message.as_bytes(), event_time)
        if self.stopping.is_set():
            return None
        if delivery.attempts > 0 or self.blocked_until > time.monotonic():
            self.metrics.email_parked.inc()
            await self.park(parked)
            return delivery
        delivery = await self._settle(delivery, await self._attempt(message), event_time)
        if delivery.status in ("pending", "retrying"):
            self.metrics.email_parked.inc()
            await self.park(parked)
        return delivery

    async def retry(self, parked: Parked) -> bool:
        """Attempt a parked email until settled (True); False = interrupted by shutdown (replayed later)."""
        key = (parked.subscription_id, parked.event_id)
        if key in self._retrying:
            return True
        self._retrying.add(key)
        try:
            return await self._retry(parked)
        finally:
            self._retrying.discard(key)

    async def _retry(self, parked: Parked) -> bool:
        message = email.message_from_bytes(parked.body, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        while True:
            delivery = await asyncio.to_thread(self.store.get_delivery, parked.subscription_id, parked.event_id)
            if delivery is None or delivery.status in ("delivered", "dead"):
                return True
            expired = self.policy.give_up(delivery, datetime.now(UTC))
            if expired is not None:
                await self._dead(delivery, *expired)
                return True
            sub = await asyncio.to_thread(self.store.get_area_subscription, parked.subscription_id)
            if sub is None:
                log.info("area subscription %s was removed; dropping email %s", parked.subscription_id,
                         parked.event_id)
                return True
            wait = max(due_in(delivery, datetime.now(UTC)), self.blocked_until - time.monotonic())
            if wait > 0:
                if await self._sleep(min(wait, 1.0)):
                    return False
                continue
            if self.stopping.is_set():
                return False
            delivery = await self._settle(delivery, await self._attempt(message), parked.event_time)
            if delivery.status in ("delivered", "dead"):
                return True

    async def _attempt(self, message: EmailMessage) -> SendResult:
        result = await self.transport.send(message)
        if result.ok:
            outcome = "ok"
        elif result.code is not None:
            outcome = f"{result.code // 100}xx"
        else:
            outcome = "network_error"
        self.metrics.email_attempts.labels(outcome).inc()
        return result

    async def _settle(self, delivery: Delivery, result: SendResult, event_time: datetime | None) -> Delivery:
        now = datetime.now(UTC)
        delivery = replace(delivery, attempts=delivery.attempts + 1, updated_at=now, last_status_code=result.code,
                           last_error=result.error)
        if result.ok:
            self.blocked_until = 0.0
            delivery = replace(delivery, status="delivered", last_error=None, next_attempt_at=None)
            await self._record(delivery)
            self.metrics.email_sent.labels(delivery.event_type.removeprefix(EVENT_TYPE_PREFIX)).inc()
            if event_time is not None:
                self.metrics.email_latency.observe((now - event_time).total_seconds())
            return delivery
        if result.permanent:
            return await self._dead(delivery, "refused", result.error or "refused")
        delay = self.policy.delay(delivery.attempts)
        self.blocked_until = max(self.blocked_until, time.monotonic() + delay)
        delivery = replace(delivery, status="retrying", next_attempt_at=now + timedelta(seconds=delay))
        await self._record(delivery)
        log.info("email %s to area subscription %s failed (%s); retry %d in %.1f s", delivery.event_id,
                 delivery.subscription_id, result.error, delivery.attempts + 1, delay)
        return delivery

    async def _sleep(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

    async def _dead(self, delivery: Delivery, reason: str, error: str) -> Delivery:
        dead = replace(delivery, status="dead", updated_at=datetime.now(UTC), last_error=error[:500],
                       next_attempt_at=None)
        await self._record(dead)
        self.metrics.email_dead.labels(reason).inc()
        log.warning("gave up email %s to area subscription %s: %s", dead.event_id, dead.subscription_id, error)
        return dead
