"""Shared retry timing: equal-jitter backoff bounds and Retry-After parsing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from citysense_common.retry import equal_jitter, retry_after_seconds


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2024, 5, 6, 10, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120.0
    when = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(when, now=lambda: now.timestamp()) == pytest.approx(90.0)
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(past, now=lambda: now.timestamp()) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 0.5, 1.0), (1, 1.0, 2.0), (3, 4.0, 8.0), (20, 30.0, 60.0)])
def test_equal_jitter_stays_within_half_to_full_ceiling(attempt: int, low: float, high: float) -> None:
    rng = random.Random(7)
    delays = [equal_jitter(attempt, base=1.0, cap=60.0, rng=rng) for _ in range(500)]
    assert min(delays) >= low and max(delays) <= high
    assert max(delays) - min(delays) > (high - low) * 0.5  # really jittered, not constant
