"""Retry timing shared by every HTTP client in citysense (webhook delivery, the openSenseMap poller)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC
from email.utils import parsedate_to_datetime

_RNG = random.Random()


def equal_jitter(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Backoff for retry ``attempt`` (0, 1, 2, ...): ``min(cap, base·2^attempt)`` scaled by a factor in [0.5, 1].

    Half fixed, half random ("equal jitter"): retries of many clients spread out but still grow.
    """
    ceiling = min(cap, base * 2 ** max(attempt, 0))
    return ceiling * (0.5 + 0.5 * (rng or _RNG).random())


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent or garbled."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())
