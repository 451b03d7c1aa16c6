"""freeze_once moves the worker's start-up heap out of the collector's reach, once; later garbage is still freed."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import gc, weakref
from citysense_scorer.worker_gc import freeze_once, frozen
assert not frozen() and gc.get_freeze_count() == 0
freeze_once()
first = gc.get_freeze_count()
freeze_once()
assert frozen() and first > 1000 and gc.get_freeze_count() == first, (first, gc.get_freeze_count())
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a  # a cycle made after the freeze must still be collected
probe = weakref.ref(a)
del a, b
gc.collect()
assert probe() is None
print("ok")
"""


def test_freeze_once_in_a_fresh_interpreter() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
