"""The bench's stack runs (bench/pipeline.py): which stack settings a run takes from its own environment."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
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



# A parent in a new session whose child moves to a process group of its own, as PySpark's daemon does
# (os.setpgid(0, 0)) under the scorer's JVM.
LEAVER = "import os, time; os.setpgid(0, 0); time.sleep(30)"
PARENT = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {LEAVER!r}]); time.sleep(30)"


def test_a_group_includes_the_processes_that_left_it_for_their_own_group() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], start_new_session=True)
    members: list[int] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            members = pipeline.group_members([parent.pid])
            child = [pid for pid in members if pid != parent.pid]
            if child and pipeline._stat(child[0])[2] == str(child[0]):  # it has left for its own group
                break
            time.sleep(0.05)
        assert sorted(members) == sorted([parent.pid, *child])
        assert len(child) == 1
        assert pipeline.group_of(child[0], [parent.pid]) == parent.pid
        assert pipeline.group_of(parent.pid, [parent.pid]) == parent.pid
        assert pipeline.group_of(os.getpid(), [parent.pid]) is None
    finally:
        for pid in members:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
