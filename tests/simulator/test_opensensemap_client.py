"""The openSenseMap client backs off politely: jittered exponential delays, Retry-After honoured, no retry on 4xx.

Real HTTP against a local server; sleeps are recorded, never waited.
"""

from __future__ import annotations

import random

import pytest
from citysense_simulator.opensensemap_client import (
    ApiError,
    ApiUnavailable,
    Backoff,
    OpenSenseMapClient,
)

from .osem_fake import Answer, FakeOpenSenseMap, fixture


@pytest.fixture
def api():
    with FakeOpenSenseMap() as fake:
        yield fake


def client_for(api: FakeOpenSenseMap, sleeps: list[float], **kwargs) -> OpenSenseMapClient:
    return OpenSenseMapClient(api.url, sleep=sleeps.append, backoff=Backoff(base=2.0, cap=60.0,
                              rng=random.Random(7)), **kwargs)


def test_429_with_retry_after_waits_at_least_that_long_then_succeeds(api) -> None:
    api.queued["/boxes"] = [Answer(429, b'{"code":"TooManyRequests"}', {"Retry-After": "17"}),
                            Answer(503, b"maintenance"), fixture("boxes_pm25.json")]
    sleeps: list[float] = []
    boxes = client_for(api, sleeps).boxes("13.0,52.3,13.8,52.7", "PM2.5")
    assert len(boxes) == 4
    assert len(sleeps) == 2
    assert sleeps[0] >= 17  # the server's Retry-After wins over the 1-2 s first backoff
    assert 2.0 <= sleeps[1] <= 4.0  # attempt 1: base * 2**1 = 4, equal jitter -> [2, 4]
    assert len(api.requests) == 3
    assert "bbox=13.0%2C52.3%2C13.8%2C52.7" in api.requests[-1] and "full=true" in api.requests[-1]


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    backoff = Backoff(base=1.0, cap=30.0, rng=random.Random(1))
    delays = [backoff.delay(attempt) for attempt in range(8)]
    for attempt, delay in enumerate(delays):
        ceiling = min(30.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays[5:]}) > 1  # jittered, not lockstep
    # A Retry-After of a day is clamped to the cap rather than parking the poller.
    assert backoff.delay(0, retry_after=86400) == 30.0


def test_gives_up_after_max_attempts_with_the_last_error(api) -> None:
    api.standing["/boxes"] = Answer(502, b"bad gateway")
    sleeps: list[float] = []
    with pytest.raises(ApiUnavailable, match=r"gave up after 3 attempts \(HTTP 502\)"):
        client_for(api, sleeps, max_attempts=3).boxes("13,52,14,53", "PM10")
    assert len(sleeps) == 2 and len(api.requests) == 3


def test_client_errors_are_not_retried(api) -> None:
    sleeps: list[float] = []
    with pytest.raises(ApiError, match="HTTP 404"):
        client_for(api, sleeps).box_sensors("000000000000000000000000")
    assert sleeps == [] and len(api.requests) == 1


def test_transport_errors_are_retried() -> None:
    sleeps: list[float] = []
    # Nothing listens on port 9 of loopback (discard): connection refused, a transport error.
    client = OpenSenseMapClient("http://127.0.0.1:9", sleep=sleeps.append, max_attempts=2,
                                backoff=Backoff(base=0.5, rng=random.Random(3)))
    with pytest.raises(ApiUnavailable, match="ConnectError"):
        client.boxes("13,52,14,53", "PM10")
    assert len(sleeps) == 1
