"""The P2 floor's latency arithmetic and the bench's choice of stack settings."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import p2_floor  # noqa: E402
import pipeline  # noqa: E402


def test_latency_is_arrival_minus_the_readings_time_in_ms_without_null_rows() -> None:
    ts_us = np.array([1_000_000_000.0, np.nan, 1_000_250_000.0])  # two readings 250 ms apart, one row without ts
    assert p2_floor.latencies_ms(ts_us, arrived_ms=1_000_400.0).tolist() == [400.0, 150.0]


def test_a_run_passes_only_the_chosen_settings_to_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_SCORER_SOURCE_TASKS", "0")
    monkeypatch.setenv("CITYSENSE_SCORER_TRIGGER_MS", "50")  # not one a run may choose: the stack's default stays
    run = pipeline.StackRun(stations=10, components="scorer")
    shutil.rmtree(run.tmp)  # nothing is started here
    env = run.env()
    assert env["CITYSENSE_SCORER_SOURCE_TASKS"] == "0"
    assert "CITYSENSE_SCORER_TRIGGER_MS" not in env
    assert "CITYSENSE_SCORER_SOURCE_TASKS=0." in pipeline.run_note()
