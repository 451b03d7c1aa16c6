"""R11: slow subscribers do not slow the others.

Beside a fast receiver, one subscriber trickles its answer a byte every 0.25 s (no single read ever times out) and
another answers 500 with a 256 MiB body. Alert events arrive at 20/s for 8 s, with the in-flight limit low
(CITYSENSE_NOTIFIER_MAX_IN_FLIGHT=50) so that a backlog held for the slow ones would pause consumption within
seconds. The fast subscriber must still get every webhook within 1 s of its event being published.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import time
from pathlib import Path

import pytest
from citysense_common.testing.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("notifier_fixtures",
                                               Path(__file__).resolve().parents[1] / "notifier" / "conftest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nf
_spec.loader.exec_module(nf)
notifier = nf.notifier

RATE_HZ, SECONDS = 20, 8


def test_fast_subscriber_keeps_its_latency_beside_slow_ones(notifier) -> None:  # noqa: ANN001
    fast = WebhookReceiver(keep_alive=True)
    trickle = nf.SlowReceiver("trickle", interval=0.25)
    huge = nf.SlowReceiver("huge", body_size=256 << 20)
    try:
        notifier.subscribe(trickle.url)
        notifier.subscribe(huge.url)
        notifier.subscribe(fast.url)
        proc = notifier.start(CITYSENSE_NOTIFIER_MAX_IN_FLIGHT="50")
        warmup = nf.make_event("warm-up")
        notifier.publish(warmup)
        fast.wait_for(1, timeout=60)
        published: dict[str, float] = {}
        for i in range(RATE_HZ * SECONDS):
            event = nf.make_event(f"st-{i}")
            notifier.publish(event)
            published[event.event_id] = time.time()
            time.sleep(1 / RATE_HZ)
        fast.wait_until(lambda r: False, timeout=3)  # stragglers
        arrived = {r.payload["id"]: r.at for r in fast.received()}
        latencies = sorted(arrived[e] - t if e in arrived else float("inf") for e, t in published.items())
        missing = sum(1 for e in published if e not in arrived)
        print(f"\nR11 fast subscriber: {len(published)} events, missing {missing}, median "
              f"{statistics.median(latencies):.3f} s, max {latencies[-1]:.3f} s; slow ones got "
              f"{len(trickle.arrivals)} (trickle) and {len(huge.arrivals)} (huge) requests")
        assert proc.poll() is None, notifier.logs()
        assert missing == 0, notifier.logs()
        assert latencies[-1] < 1.0, notifier.logs()
    finally:
        fast.close()
        trickle.close()
        huge.close()
