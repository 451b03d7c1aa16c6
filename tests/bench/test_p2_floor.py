"""The P2 floor's latency arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import p2_floor  # noqa: E402


def test_latency_is_arrival_minus_the_readings_time_in_ms_without_null_rows() -> None:
    ts_us = np.array([1_000_000_000.0, np.nan, 1_000_250_000.0])  # two readings 250 ms apart, one row without ts
    assert p2_floor.latencies_ms(ts_us, arrived_ms=1_000_400.0).tolist() == [400.0, 150.0]

