"""P1's rung verdict (bench/p1_throughput.py) over recorded and constructed lag samples."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import p1_throughput as p1  # noqa: E402


def stepped(rate: float, window: float, cycle_s: float, deficit: float = 0.0) -> list[tuple[float, float, float]]:
    """Samples every second: the simulator delivers one whole round per second; the scorer finishes everything
    delivered up to the previous commit, in one step per ``cycle_s`` (less ``deficit`` of it when falling behind)."""
    out, done, last_commit = [], 0.0, 0.0
    for t in range(int(window)):
        delivered = rate * t
        if t - last_commit >= cycle_s:
            done += rate * cycle_s * (1 - deficit)
            last_commit = t
        out.append((float(t), delivered, done))
    return out


def test_a_rung_that_keeps_up_in_whole_batches_is_sustained() -> None:
    # The quantised curve of a real 1,000/s rung (lag 1,000 most of the time, 2,000-3,000 at the end) failed the
    # old 1 s trend tolerance on sampling alone.
    samples = [(float(t), 1000.0 * t, 1000.0 * t - (1000 if t < 30 else 2000 if t % 3 else 1000)) for t in range(60)]
    verdict = p1.rung_verdict(samples, 1000, 60)
    assert verdict["lag_bounded"] and verdict["sustained"]


def test_long_micro_batches_widen_the_bound_by_one_batch() -> None:
    samples = stepped(5000, 60, cycle_s=6)
    verdict = p1.rung_verdict(samples, 5000, 60)
    assert verdict["largest_batch"] == 30_000
    assert verdict["sustained"], verdict


def test_a_growing_lag_is_not_sustained() -> None:
    # The scorer finishes 85 % of each cycle's input: lag grows by ~0.9 s of input per 6 s cycle.
    verdict = p1.rung_verdict(stepped(5000, 60, cycle_s=6, deficit=0.15), 5000, 60)
    assert not verdict["scorer_kept_up"] and not verdict["sustained"]


def test_a_lag_that_climbs_steadily_fails_the_trend_even_when_throughput_looks_close() -> None:
    # 92 % of the input finished (passes the 90 % rule), but the lag climbs from mid-window on, by more than
    # 2 s of input between the middle and the last 15 s.
    samples = [(float(t), 1000.0 * t, 1000.0 * t - (0 if t < 30 else 150.0 * (t - 30))) for t in range(60)]
    verdict = p1.rung_verdict(samples, 1000, 60)
    assert verdict["scorer_kept_up"]
    assert verdict["lag_trend"] > 2000 and not verdict["lag_bounded"] and not verdict["sustained"]


def test_a_generator_that_cannot_deliver_makes_the_rung_unsustained() -> None:
    samples = [(float(t), 500.0 * t, 500.0 * t) for t in range(60)]
    verdict = p1.rung_verdict(samples, 1000, 60)
    assert not verdict["load_generator_ok"] and not verdict["sustained"]


def test_no_samples_is_not_sustained() -> None:
    assert p1.rung_verdict([], 1000, 60)["sustained"] is False


def test_the_scorer_counting_a_round_before_the_simulator_does_is_not_a_rising_lag() -> None:
    # A 500/s rung (1,000 stations x 0.5 Hz, one round every 2 s) that kept up: the scorer's counter is sometimes a
    # round ahead of the simulator's acknowledged count. Read as a lag of -1,000 in the middle of the window, that
    # made a trend of +1,000 (= 2 s of input) and failed the rung.
    samples = [(float(t), 1000.0 * (t // 2), 1000.0 * (t // 2) + (1000 if t == 20 else 0)) for t in range(60)]
    verdict = p1.rung_verdict(samples, 500, 60)
    assert verdict["lag_trend"] == 0 and verdict["lag_max"] == 0
    assert verdict["sustained"]
