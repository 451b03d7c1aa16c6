"""Child-process helpers: children die with their parent and are stopped gently, then firmly."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Sequence

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A SIGKILLed launcher cannot clean up; the kernel then sends the child SIGTERM so nothing is orphaned.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
    os.setpgrp()


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None, log_path: str | None = None,
          cwd: str | None = None) -> subprocess.Popen:
    """Start a child in its own process group (so its own children are stopped with it)."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads run in the launcher at spawn time
        )
    finally:
        if log_path:
            out.close()


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> int:
    """SIGTERM the child's process group, wait, then SIGKILL what is left. Returns the exit code."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers in the group, e.g. a JVM a driver started
    except (ProcessLookupError, PermissionError):
        pass
    return proc.wait()
