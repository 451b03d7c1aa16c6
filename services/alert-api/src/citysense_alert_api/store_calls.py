"""Store calls off the event loop, each with a time limit.

Store backends are blocking: a SQLite writer waits up to its busy timeout (30 s) for another process's lock, a
Cassandra query for its coordinator. Run on the event loop, one such wait would freeze every request, live stream
and ``/healthz`` with it. :class:`StoreCalls` runs each call on a small thread pool of its own and gives up waiting
after ``CITYSENSE_API_STORE_TIMEOUT_S`` (the request then gets a 503); the thread finishes the call in the
background, and ``/readyz`` reports the store as slow while any call has been running longer than the limit.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from citysense_common.store import Store, StoreError

T = TypeVar("T")
STORE_THREADS = 16  # bounds the store connections (SQLite: one per thread) and the calls stuck at once


class StoreTimeout(StoreError):
    """A store call took longer than the API waits (it may still complete in the background)."""


class StoreCalls:
    """The store's methods as coroutines: ``await calls.get_station(id)`` runs ``store.get_station(id)`` on the pool.

    Any other attribute of the store is passed through unchanged."""

    def __init__(self, store: Store, timeout_s: float, threads: int = STORE_THREADS) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="store")
        self._running: dict[int, float] = {}  # call number -> when its thread started it
        self._numbers = itertools.count()
        self.timeouts = 0

    async def run(self, fn: Callable[..., T], *args: Any, timeout_s: float | None = None, **kwargs: Any) -> T:
        number = next(self._numbers)

        def job() -> T:
            self._running[number] = time.monotonic()
            try:
                return fn(*args, **kwargs)
            finally:
                self._running.pop(number, None)

        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await asyncio.wait_for(future, limit)
        except TimeoutError:
            self.timeouts += 1
            raise StoreTimeout(f"{getattr(fn, '__name__', 'store call')} took longer than {limit:g} s") from None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self.run(attr, *args, **kwargs)

        return call

    def longest_running_s(self) -> float:
        """How long the oldest store call still running has been running (0 when none is)."""
        started = list(self._running.values())
        return time.monotonic() - min(started) if started else 0.0

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
