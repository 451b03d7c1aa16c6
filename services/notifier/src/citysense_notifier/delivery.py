"""Delivering one event to one subscriber: signed POST, retries with backoff and jitter, dead letters.

Every state change is written to the delivery log (store) before the caller may commit the Kafka offset, and the
``webhook-id`` is derived from (subscription, event), so a redelivery after a crash carries the same id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import httpx
from citysense_common.retry import equal_jitter, retry_after_seconds
from citysense_common.store import Delivery, Store, Subscription
from citysense_common.webhooks import UnsafeWebhookURL, signed_headers, webhook_id_for

from citysense_notifier.cloudevent import CONTENT_TYPE
from citysense_notifier.metrics import NotifierMetrics

log = logging.getLogger("citysense.notifier.delivery")
_PERMANENT_STATUSES = frozenset({410})  # Gone: the receiver says stop
_RETRY_AFTER_STATUSES = frozenset({429, 503})


# What is read of an answer: its status and headers decide, a short body is read so the connection can be reused,
# and a longer one is not read at all (the connection is closed instead).
RESPONSE_READ_MAX_BYTES = 4096


async def _drain(response: httpx.Response, limit: int) -> None:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= limit:
            return


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    max_age_s: float = 3600.0
    base_s: float = 1.0
    max_s: float = 300.0

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Exponential backoff with jitter (half fixed, half random, so retries spread but still grow)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_s)
        return equal_jitter(attempts - 1, self.base_s, self.max_s)

    def give_up(self, delivery: Delivery, now: datetime) -> tuple[str, str] | None:
        """(reason, detail) when a parked delivery has had its attempts or its time, else None."""
        if delivery.attempts >= self.max_attempts:
            return "max_attempts", f"gave up after {delivery.attempts} attempts: {delivery.last_error}"
        age = (now - delivery.created_at).total_seconds()
        if age > self.max_age_s:
            return "max_age", f"gave up after {age:.0f} s (max age): {delivery.last_error}"
        return None


def due_in(delivery: Delivery, now: datetime) -> float:
    """Seconds until a parked delivery's next attempt is due (<= 0: now)."""
    return 0.0 if delivery.next_attempt_at is None else (delivery.next_attempt_at - now).total_seconds()


@dataclass
class SubscriberGate:
    """Per-subscriber state: a concurrency limit and a shared backoff, so one failing receiver slows only itself."""

    semaphore: asyncio.Semaphore
    blocked_until: float = 0.0  # monotonic time before which no attempt is made to this subscriber


@dataclass(frozen=True)
class Parked:
    """A delivery handed to the retry lane: what it takes to attempt it again, durably queued (Kafka)."""

    subscription_id: str
    event_id: str
    event_type: str
    body: bytes
    event_time: datetime | None = None

    def to_json(self) -> bytes:
        return json.dumps({"subscription_id": self.subscription_id, "event_id": self.event_id,
                           "event_type": self.event_type, "body": self.body.decode(),
                           "event_time": None if self.event_time is None else self.event_time.isoformat()},
                          separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Parked:
        doc = json.loads(raw)
        at = doc.get("event_time")
        return cls(str(doc["subscription_id"]), str(doc["event_id"]), str(doc["event_type"]),
                   str(doc["body"]).encode(), None if at is None else datetime.fromisoformat(at))


async def _never_parks(parked: Parked) -> None:
    raise RuntimeError("no retry lane configured")


@dataclass
class Deliverer:
    """Two lanes. ``first_attempt`` (new events) makes at most one attempt, soon or not at all: a subscriber that is
    backing off, or whose slots stay busy for ``slot_wait_s``, gets the delivery parked instead, so an event's Kafka
    offset waits at most that plus one attempt's deadline, whatever its subscribers do. ``retry`` (parked
    deliveries, replayed from the retry topic) attempts until delivered or dead, honouring ``next_attempt_at`` from
    the store, also after a restart, and holding while the subscription is paused.
    """

    store: Store
    client: httpx.AsyncClient
    policy: RetryPolicy
    metrics: NotifierMetrics
    concurrency: int = 4
    attempt_timeout_s: float = 5.0  # deadline of one whole attempt, connect to the last byte read
    park: Callable[[Parked], Awaitable[None]] = _never_parks  # durably queues a delivery for the retry lane
    hold_poll_s: float = 1.0  # how often a held (paused) delivery looks at its subscription again
    slot_wait_s: float = 1.0  # how long a new event waits for a busy subscriber's slot before it is parked
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _gates: dict[str, SubscriberGate] = field(default_factory=dict)
    _retrying: set[tuple[str, str]] = field(default_factory=set)

    def _gate(self, subscription_id: str) -> SubscriberGate:
        gate = self._gates.get(subscription_id)
        if gate is None:
            gate = self._gates[subscription_id] = SubscriberGate(asyncio.Semaphore(self.concurrency))
        return gate

    async def _record(self, delivery: Delivery) -> None:
        # SQLite writes are quick, but a Cassandra write is a network call: keep the event loop free.
        await asyncio.to_thread(self.store.record_delivery, delivery)

    async def first_attempt(self, subscription: Subscription, event_id: str, event_type: str, body: bytes,
                            event_time: datetime | None = None) -> Delivery | None:
        """Deliver now, or park: returns the recorded state (delivered, dead, or pending/retrying and parked), or
        None when shutting down before anything was settled (the offset stays uncommitted, the event replays)."""
        existing = await asyncio.to_thread(self.store.get_delivery, subscription.id, event_id)
        if existing is not None and existing.status in ("delivered", "dead"):
            return existing  # a replayed event that was already settled
        now = datetime.now(UTC)
        delivery = existing or Delivery(
            subscription_id=subscription.id, event_id=event_id, webhook_id=webhook_id_for(subscription.id, event_id),
            status="pending", attempts=0, created_at=now, updated_at=now, event_type=event_type,
        )
        if existing is None:
            await self._record(delivery)
        parked = Parked(subscription.id, event_id, event_type, body, event_time)
        gate = self._gate(subscription.id)
        if self.stopping.is_set():
            return None
        # Not now: it failed before (a replayed event: its retry is due at next_attempt_at), the subscriber is
        # backing off, or no slot of it came free within slot_wait_s (a slow receiver). The retry lane takes it.
        if delivery.attempts > 0 or gate.blocked_until > time.monotonic() or not await self._slot(gate):
            self.metrics.parked.inc()
            await self.park(parked)
            return delivery
        try:
            delivery, retry_after, permanent = await self._attempt(subscription, delivery, body)
        finally:
            gate.semaphore.release()
        delivery = await self._settle(gate, subscription, delivery, retry_after, permanent, event_time)
        if delivery.status in ("pending", "retrying"):
            await self.park(parked)
        return delivery

    async def _slot(self, gate: SubscriberGate) -> bool:
        """Take one of the subscriber's slots within ``slot_wait_s``, unless it starts backing off meanwhile."""
        try:
            async with asyncio.timeout(self.slot_wait_s):
                await gate.semaphore.acquire()
        except TimeoutError:
            return False
        if gate.blocked_until > time.monotonic():
            gate.semaphore.release()
            return False
        return True

    async def retry(self, parked: Parked) -> bool:
        """Attempt a parked delivery until settled (True: delivered, dead, or its subscription deleted);
        False = interrupted by shutdown (the parked message is replayed)."""
        key = (parked.subscription_id, parked.event_id)
        if key in self._retrying:
            return True  # a duplicate of a delivery this process is already retrying
        self._retrying.add(key)
        try:
            return await self._retry(parked)
        finally:
            self._retrying.discard(key)

    async def store_state(self, parked: Parked) -> Delivery | None:
        return await asyncio.to_thread(self.store.get_delivery, parked.subscription_id, parked.event_id)

    async def _retry(self, parked: Parked) -> bool:
        gate = self._gate(parked.subscription_id)
        while True:
            delivery = await self.store_state(parked)
            if delivery is None or delivery.status in ("delivered", "dead"):
                return True  # settled meanwhile (or never recorded here: another installation's store)
            expired = self.policy.give_up(delivery, datetime.now(UTC))
            if expired is not None:
                await self._dead(delivery, *expired)
                return True
            sub = await asyncio.to_thread(self.store.get_subscription, parked.subscription_id)
            if sub is None:
                log.info("subscription %s was deleted; dropping delivery of %s", parked.subscription_id,
                         parked.event_id)
                return True
            if sub.status != "active":
                # Paused: held, not given up; it goes out once the subscription is active again (or dies of age).
                if await self._sleep(self.hold_poll_s):
                    return False
                continue
            wait = max(due_in(delivery, datetime.now(UTC)), gate.blocked_until - time.monotonic())
            if wait > 0:
                if await self._sleep(min(wait, self.hold_poll_s)):
                    return False
                continue  # look again: the subscription may have been paused or deleted meanwhile
            async with gate.semaphore:
                if gate.blocked_until > time.monotonic():
                    continue  # another delivery to this subscriber failed while this one waited for a slot
                if self.stopping.is_set():
                    return False
                delivery, retry_after, permanent = await self._attempt(sub, delivery, parked.body)
            delivery = await self._settle(gate, sub, delivery, retry_after, permanent, parked.event_time)
            if delivery.status in ("delivered", "dead"):
                return True

    async def _settle(self, gate: SubscriberGate, sub: Subscription, delivery: Delivery, retry_after: float | None,
                      permanent: bool, event_time: datetime | None) -> Delivery:
        """Record the outcome of one attempt; a failure sets the subscriber's backoff and ``next_attempt_at``."""
        if delivery.status == "delivered":
            gate.blocked_until = 0.0
            self.metrics.delivered.inc()
            if event_time is not None:
                self.metrics.latency.observe((datetime.now(UTC) - event_time).total_seconds())
            await self._record(delivery)
            return delivery
        if permanent:
            return await self._dead(delivery, "refused", delivery.last_error or "refused")
        delay = self.policy.delay(delivery.attempts, retry_after)
        gate.blocked_until = max(gate.blocked_until, time.monotonic() + delay)
        delivery = replace(delivery, status="retrying", next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay))
        await self._record(delivery)
        log.info("delivery %s to %s failed (%s); retry %d in %.1f s", delivery.webhook_id, sub.id,
                 delivery.last_error, delivery.attempts + 1, delay)
        return delivery

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless shutting down; True = stop now (the offset stays uncommitted and the event is replayed)."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
            return True
        except TimeoutError:
            return False

    async def _attempt(self, sub: Subscription, delivery: Delivery, body: bytes
                       ) -> tuple[Delivery, float | None, bool]:
        attempts = delivery.attempts + 1
        now = datetime.now(UTC)
        headers = {"content-type": CONTENT_TYPE, "user-agent": "citysense-notifier/1",
                   **signed_headers(sub.secret, delivery.webhook_id, body)}
        try:
            # One deadline for the whole attempt: a receiver trickling its answer a byte at a time never trips
            # httpx's per-read timeout, so that alone could hold an attempt (and the subscriber's slot) for minutes.
            async with asyncio.timeout(self.attempt_timeout_s):
                # The client's transport (PinnedTransport) checks the URL at every attempt, not only at subscription
                # time, since DNS answers change, and connects to the very addresses it checked.
                async with self.client.stream("POST", sub.url, content=body, headers=headers) as response:
                    await _drain(response, RESPONSE_READ_MAX_BYTES)
        except UnsafeWebhookURL as exc:
            self.metrics.attempts.labels("refused_url").inc()
            return replace(delivery, attempts=attempts, updated_at=now, last_status_code=None,
                           last_error=f"URL refused: {exc}"), None, True
        except TimeoutError:
            self.metrics.attempts.labels("network_error").inc()
            return replace(delivery, attempts=attempts, updated_at=datetime.now(UTC), last_status_code=None,
                           last_error=f"Timeout: no complete answer within {self.attempt_timeout_s:g} s"), None, False
        except httpx.HTTPError as exc:
            self.metrics.attempts.labels("network_error").inc()
            return replace(delivery, attempts=attempts, updated_at=now, last_status_code=None,
                           last_error=f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__), None, False
        code = response.status_code
        if 200 <= code < 300:
            self.metrics.attempts.labels("ok").inc()
            return replace(delivery, status="delivered", attempts=attempts, updated_at=now, last_status_code=code,
                           last_error=None, next_attempt_at=None), None, False
        self.metrics.attempts.labels(f"{code // 100}xx").inc()
        retry_after = None
        if code in _RETRY_AFTER_STATUSES:
            retry_after = retry_after_seconds(response.headers.get("retry-after"))
        error = f"HTTP {code}" + (" (redirects are not followed)" if 300 <= code < 400 else "")
        return (replace(delivery, attempts=attempts, updated_at=now, last_status_code=code, last_error=error),
                retry_after, code in _PERMANENT_STATUSES)

    async def _dead(self, delivery: Delivery, reason: str, error: str) -> Delivery:
        dead = replace(delivery, status="dead", updated_at=datetime.now(UTC), last_error=error[:500],
                       next_attempt_at=None)
        await self._record(dead)
        self.metrics.dead.labels(reason).inc()
        log.warning("dead-lettered delivery %s of %s to %s: %s", dead.webhook_id, dead.event_id,
                    dead.subscription_id, error)
        return dead
