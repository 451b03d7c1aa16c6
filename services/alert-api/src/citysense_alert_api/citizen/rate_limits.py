"""Sliding-window request limits for the public subscribe endpoint (per email address and per client address).

The counts live in the memory of one API process: with N processes (``CITYSENSE_API_WORKERS``, replicas) a client
can make up to N times the configured requests per window, and a restart forgets the counts. That bounds abuse
(confirmation emails to someone else's inbox, pending rows in the store) by a known factor without a shared
counter; the per-address limit also keeps a list of addresses from being tried quickly.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable


class SlidingWindowLimiter:
    """At most ``limit`` hits per key within any ``window_s`` seconds; ``max_keys`` bounds the memory (the key
    seen least recently is forgotten first)."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str) -> float | None:
        """Count a request for ``key``: None when allowed, else the seconds until one more would be (not counted)."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque()
                while len(self._hits) > self.max_keys:
                    self._hits.popitem(last=False)
            else:
                self._hits.move_to_end(key)
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window_s - now, 0.001)
            hits.append(now)
            return None

    def __len__(self) -> int:
        return len(self._hits)


def retry_after(seconds: float) -> str:
    """``Retry-After`` in whole seconds, rounded up (at least 1)."""
    return str(max(1, math.ceil(seconds)))


def client_key(host: str | None) -> str:
    """The client's address as a rate-limit key: an IPv6 client by its /64 (one host usually holds a whole /64)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
