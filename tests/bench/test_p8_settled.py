"""When P8 (bench/p8_idle.py) takes a window of CPU as the stack's steady state."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import p8_idle  # noqa: E402


def windows(*totals: float, every: int = 60) -> list[dict]:
    return [{"start_s": i * every, "cores": {"total": t}} for i, t in enumerate(totals)]


def test_a_window_within_the_tolerance_of_the_one_before_after_the_warm_up_is_settled() -> None:
    assert p8_idle.settled(windows(0.9, 0.6, 0.45, 0.3, 0.29), warm_up=180, settle=0.1)


def test_falling_cpu_is_not_settled() -> None:
    # The JIT still compiling: each window well below the one before.
    assert not p8_idle.settled(windows(0.9, 0.6, 0.45, 0.35), warm_up=180, settle=0.1)


def test_agreeing_windows_before_the_warm_up_do_not_count() -> None:
    assert not p8_idle.settled(windows(0.5, 0.5), warm_up=180, settle=0.1)
    assert not p8_idle.settled(windows(0.3), warm_up=0, settle=0.1)  # one window has nothing to agree with


def test_cores_of_a_window_are_cpu_seconds_over_wall_seconds_with_their_total() -> None:
    cores = p8_idle.window_cores({"scorer": 10.0, "broker": 2.0}, {"scorer": 16.0, "broker": 5.0}, 30.0)
    assert cores == {"scorer": 0.2, "broker": 0.1, "total": 0.3}
