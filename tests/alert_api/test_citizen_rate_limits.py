"""The subscribe endpoint's sliding-window limits and client keys (the endpoint itself: test_citizen.py)."""

from __future__ import annotations

from citysense_alert_api.citizen.rate_limits import SlidingWindowLimiter, client_key, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_at_most_limit_hits_in_any_window_and_refusals_are_not_counted() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(3, 60, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    assert limiter.hit("a") == 60  # the oldest hit leaves the window in 60 s
    clock.now += 30
    assert limiter.hit("a") == 30
    assert limiter.hit("b") is None  # keys are independent
    clock.now += 30  # the first three hits (t=1000) leave the window now
    assert [limiter.hit("a") for _ in range(4)] == [None, None, None, 60]


def test_the_least_recently_seen_key_is_forgotten_first() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 60, max_keys=2, clock=clock)
    assert limiter.hit("a") is None and limiter.hit("b") is None
    assert limiter.hit("a") is not None  # refused, and "a" is now the most recently seen
    assert limiter.hit("c") is None  # evicts "b"
    assert len(limiter) == 2
    assert limiter.hit("b") is None  # forgotten: counts afresh (and evicts "a")
    assert limiter.hit("c") is not None  # still remembered
    assert limiter.hit("a") is None


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after(s) for s in (0.001, 1.0, 1.2, 59.9)] == ["1", "1", "2", "60"]


def test_client_keys() -> None:
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::7") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "unknown" and client_key("testclient") == "testclient"
