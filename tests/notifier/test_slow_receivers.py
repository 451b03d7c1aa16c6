"""Receivers that answer slowly or at length: each attempt has an overall deadline and reads back a few KiB."""

from __future__ import annotations

import time


def test_trickling_receiver_is_cut_at_the_attempt_deadline(notifier, event_factory, slow_receiver_factory) -> None:
    slow = slow_receiver_factory("trickle", interval=0.25)  # a byte every 0.25 s: no single read ever times out
    sub = notifier.subscribe(slow.url)
    notifier.start(CITYSENSE_WEBHOOK_TIMEOUT_S="2", CITYSENSE_WEBHOOK_BACKOFF_BASE_S="30")
    event = event_factory()
    notifier.publish(event)
    failed = notifier.wait_delivery(sub.id, event.event_id, "retrying", timeout=20)
    held = failed.updated_at.timestamp() - slow.arrivals[0]
    assert held < 3.0, f"one attempt held {held:.1f} s with a 2 s timeout"
    assert "timeout" in (failed.last_error or "").lower(), failed


def test_huge_response_body_is_not_read_whole(notifier, event_factory, slow_receiver_factory) -> None:
    huge = slow_receiver_factory("huge", body_size=256 << 20)
    sub = notifier.subscribe(huge.url)
    notifier.start(CITYSENSE_WEBHOOK_BACKOFF_BASE_S="30")
    event = event_factory()
    started = time.monotonic()
    notifier.publish(event)
    failed = notifier.wait_delivery(sub.id, event.event_id, "retrying", timeout=30)
    assert failed.last_status_code == 500
    time.sleep(0.5)
    # What the notifier took before hanging up, socket buffers included: nowhere near the 256 MiB offered.
    assert huge.sent < 16 << 20, f"the notifier read {huge.sent >> 20} MiB of a 256 MiB error body"
    assert time.monotonic() - started < 10
