"""The bench's stack runs (bench/pipeline.py): which stack settings a run takes from its own environment."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import pipeline  # noqa: E402


def test_a_run_passes_only_the_chosen_settings_to_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CITYSENSE_STORE", "cassandra")
    monkeypatch.setenv("CITYSENSE_SCORER_TRIGGER_MS", "50")  # not one a run may choose: the stack's default stays
    run = pipeline.StackRun(stations=10, components="scorer")
    shutil.rmtree(run.tmp)  # nothing is started here
    env = run.env()
    assert env["CITYSENSE_STORE"] == "cassandra"
    assert "CITYSENSE_SCORER_TRIGGER_MS" not in env
    assert "CITYSENSE_STORE=cassandra." in pipeline.run_note()
