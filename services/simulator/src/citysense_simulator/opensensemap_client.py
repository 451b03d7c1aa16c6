"""A polite HTTP client for the openSenseMap API: one request at a time, backoff with jitter, Retry-After honoured.

openSenseMap is a volunteer-run public service; a poller that hammers it during an outage gets everyone
rate-limited. Every retryable failure (transport error, 429, 5xx) waits ``min(cap, base * 2**attempt)`` scaled by
a random factor in [0.5, 1] ("equal jitter", so many pollers don't retry in lockstep), or the server's Retry-After
when it asks for longer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from citysense_common.retry import equal_jitter, retry_after_seconds

DEFAULT_API = "https://api.opensensemap.org"
USER_AGENT = "citysense-simulator/0.1 (+https://github.com/citysense; openSenseMap live source)"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
log = logging.getLogger("citysense.simulator.opensensemap")


class ApiError(RuntimeError):
    """The API answered with something we cannot use and retrying will not help (4xx, not JSON)."""


class ApiUnavailable(RuntimeError):
    """Every retry failed; the caller decides whether to wait for the next round."""


class Backoff:
    """Exponential backoff with equal jitter; ``delay(attempt, retry_after)`` for attempt 0, 1, 2, ..."""

    def __init__(self, base: float = 1.0, cap: float = 300.0, rng: random.Random | None = None) -> None:
        self.base, self.cap = base, cap
        self.rng = rng or random.Random()

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        wait = equal_jitter(attempt, self.base, self.cap, self.rng)
        if retry_after is not None:
            # The server knows best, but a hostile or broken header must not park us for a day.
            wait = max(wait, min(retry_after, self.cap))
        return wait


class OpenSenseMapClient:
    """GET JSON from the API with retries; ``sleep`` is injectable so tests never wait."""

    def __init__(self, base_url: str = DEFAULT_API, *, timeout: float = 30.0, max_attempts: int = 6,
                 backoff: Backoff | None = None, sleep: Callable[[float], None] = time.sleep,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.max_attempts = max_attempts
        self.backoff = backoff or Backoff()
        self.sleep = sleep
        self.requests = 0
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"User-Agent": USER_AGENT, "Accept": "application/json"})

    def close(self) -> None:
        self._http.close()

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        last = ""
        for attempt in range(self.max_attempts):
            retry_after: float | None = None
            try:
                self.requests += 1
                response = self._http.get(path, params=params)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        raise ApiError(f"GET {path}: response is not JSON: {response.text[:120]!r}") from None
                if response.status_code not in RETRYABLE_STATUS:
                    raise ApiError(f"GET {path}: HTTP {response.status_code}: {response.text[:200]}")
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                last = f"HTTP {response.status_code}"
            if attempt + 1 == self.max_attempts:
                break
            wait = self.backoff.delay(attempt, retry_after)
            log.warning("GET %s failed (%s); retrying in %.1fs", path, last, wait)
            self.sleep(wait)
        raise ApiUnavailable(f"GET {path}: gave up after {self.max_attempts} attempts ({last})")

    def boxes(self, bbox: str, phenomenon: str) -> list[dict[str, Any]]:
        """``GET /boxes?bbox=...&phenomenon=...&full=true``: boxes with their sensors and last measurements."""
        doc = self.get_json("/boxes", {"bbox": bbox, "phenomenon": phenomenon, "full": "true"})
        if not isinstance(doc, list):
            raise ApiError(f"GET /boxes: expected a JSON array, got {type(doc).__name__}")
        return doc

    def box_sensors(self, box_id: str) -> dict[str, Any]:
        """``GET /boxes/{id}/sensors``: the box's sensors, each with its ``lastMeasurement``."""
        doc = self.get_json(f"/boxes/{box_id}/sensors")
        if not isinstance(doc, dict):
            raise ApiError(f"GET /boxes/{box_id}/sensors: expected a JSON object, got {type(doc).__name__}")
        return doc


def parse_time(text: str) -> datetime:
    """openSenseMap timestamps are RFC 3339 UTC ("2024-05-01T10:00:00.000Z")."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
