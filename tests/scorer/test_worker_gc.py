"""freeze_once moves the worker's start-up heap out of the collector's reach, once; freeze_kept does it for state kept
between tasks; later garbage is still freed."""

from __future__ import annotations

import subprocess
import sys

CYCLE_STILL_COLLECTED = """
class Cell: pass
a, b = Cell(), Cell()
a.other, b.other = b, a  # a cycle made after the freeze must still be collected
cycle = weakref.ref(a)
del a, b
gc.collect()
assert cycle() is None
print("ok")
"""

ONCE = """
import gc, weakref
from citysense_scorer.worker_gc import freeze_once, frozen
assert not frozen() and gc.get_freeze_count() == 0
freeze_once()
first = gc.get_freeze_count()
freeze_once()
assert frozen() and first > 1000 and gc.get_freeze_count() == first, (first, gc.get_freeze_count())
""" + CYCLE_STILL_COLLECTED

KEPT = """
import gc, weakref
from citysense_scorer.worker_gc import freeze_kept
class Node: pass
kept = {"bucket": [Node() for _ in range(1000)]}  # what a worker keeps from one task to the next
before = gc.get_freeze_count()
freeze_kept()
assert gc.get_freeze_count() >= before + 1000
probe = weakref.ref(kept["bucket"][0])
kept["bucket"] = []  # the next batch replaces it: freed by reference counting although frozen
assert probe() is None
""" + CYCLE_STILL_COLLECTED


def run_fresh(script: str) -> None:
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_freeze_once_in_a_fresh_interpreter() -> None:
    run_fresh(ONCE)


def test_freeze_kept_spares_kept_state_the_collection_and_still_frees_it() -> None:
    run_fresh(KEPT)
