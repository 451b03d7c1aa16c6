"""Serialized alert-list pages, kept until the alert stream reports a change or a short maximum age passes.

The citizen map and dashboards poll ``GET /v1/alerts`` far more often than alerts change (the scorer changes them
at most once per micro-batch). Building a 100-alert page costs ~10 ms of Python (store rows -> models -> JSON);
returning cached bytes costs microseconds, which is what keeps the API's p99 low at thousands of requests a second.

Why a page can never hide a change for long:

- Ordering: when this process's alert-stream reader sees an event, the store holds the change before
  :meth:`PageCache.invalidate` drops every page (the micro-batch sink writes alerts before it produces their events;
  events of the real-time path, which only Kafka has, the reader records itself first: ``app.record_alert``), so the
  next request reads the store again and finds it.
- Race: a request that read the store just before a change but finishes after the drop must not keep its stale
  page. :meth:`PageCache.begin` stamps the read with the current generation; :meth:`PageCache.put` keeps the page
  only if no drop happened in between.
- Fallback: if the stream reader is cut off from Kafka no drop arrives, so a page also expires ``max_age_s`` after
  the read that built it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Ticket:
    """What :meth:`PageCache.begin` saw before a store read: the generation and the time."""

    generation: int
    read_at: float


class PageCache:
    """Thread-safe: the stream reader thread invalidates while the event loop reads and writes pages."""

    def __init__(self, max_age_s: float, max_entries: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._pages: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._generation = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0

    def get(self, key: Hashable) -> bytes | None:
        """The page's bytes, or None when it is not cached, expired, or caching is off."""
        if not self.enabled:
            return None
        with self._lock:
            hit = self._pages.get(key)
            if hit is not None and self._clock() - hit[0] <= self.max_age_s:
                self._pages.move_to_end(key)
                self.hits += 1
                return hit[1]
            if hit is not None:
                del self._pages[key]
            self.misses += 1
            return None

    def begin(self) -> Ticket:
        """Call before reading the store for a page that :meth:`put` will keep."""
        with self._lock:
            return Ticket(self._generation, self._clock())

    def put(self, key: Hashable, ticket: Ticket, body: bytes) -> None:
        """Keep ``body`` unless the cache was invalidated after ``ticket`` was taken (the read may predate it).
        The page's age counts from the read, not from now."""
        if not self.enabled:
            return
        with self._lock:
            if ticket.generation != self._generation:
                return
            self._pages[key] = (ticket.read_at, body)
            self._pages.move_to_end(key)
            while len(self._pages) > self.max_entries:
                self._pages.popitem(last=False)

    def invalidate(self) -> None:
        """Drop every page (an alert changed)."""
        with self._lock:
            self._generation += 1
            self._pages.clear()

    def __len__(self) -> int:
        return len(self._pages)
