"""R7's verdicts over a soak curve (bench/soak.py judge): lag and memory, with and without the broker."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak  # noqa: E402

MiB = 1024 ** 2
RATE = 10_000.0


def curve(minutes: float = 10, every: float = 5, lag: float = 30_000, broker_per_min: float = 60 * MiB,
          scorer_per_min: float = 0.0) -> list[dict]:
    points = []
    for k in range(int(minutes * 60 / every) + 1):
        t = k * every
        rss = {"broker": 100 * MiB + broker_per_min * t / 60, "scorer": 1200 * MiB + scorer_per_min * t / 60,
               "alert-api": 80 * MiB}
        rss["total"] = sum(rss.values())
        points.append({"t_s": t, "lag": lag, "scored": RATE * t, "rss": rss})
    return points


def test_a_broker_that_keeps_every_message_fails_the_whole_stack_but_not_the_rest() -> None:
    verdict = soak.judge(curve(), RATE)
    assert verdict["lag_bounded"]
    assert not verdict["memory_bounded"]  # 100 -> 700 MiB of broker on top of a flat 1.3 GiB
    assert verdict["memory_bounded_without_broker"]
    assert abs(verdict["broker_growth_per_min_bytes"] - 60 * MiB) < 1
    assert verdict["growth_by_component"]["scorer"] == 1.0 and verdict["growth_by_component"]["broker"] > 3
    assert verdict["scored_per_s_mean"] == RATE


def test_a_growing_service_fails_without_the_broker_too() -> None:
    verdict = soak.judge(curve(broker_per_min=0, scorer_per_min=40 * MiB), RATE)  # +320 MiB after minute 2
    assert not verdict["memory_bounded"] and not verdict["memory_bounded_without_broker"]
    assert verdict["broker_growth_per_min_bytes"] == 0
    flat = soak.judge(curve(broker_per_min=0), RATE)
    assert flat["memory_bounded"] and flat["memory_bounded_without_broker"]


def test_lag_that_keeps_growing_is_not_bounded() -> None:
    growing = curve()
    for p in growing:
        p["lag"] = 1_000 * p["t_s"]  # 600,000 behind after 10 minutes: a minute of input
    assert not soak.judge(growing, RATE)["lag_bounded"]
