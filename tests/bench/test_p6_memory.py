"""P6's floor (bench/p6_memory.py) reads what jcmd answers: native memory by category and the G1 heap."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import p6_memory  # noqa: E402

# The shape of `jcmd <pid> VM.native_memory summary` on OpenJDK 17 (trimmed).
NMT = """12345:

Native Memory Tracking:

(Omitting categories weighting less than 1KB)

Total: reserved=2701456KB, committed=1256789KB
       malloc: 123456KB #234567
       mmap:   reserved=2578000KB, committed=1133333KB

-                 Java Heap (reserved=786432KB, committed=761856KB)
                            (mmap: reserved=786432KB, committed=761856KB)

-                     Class (reserved=1069180KB, committed=27772KB)
                            (classes #27775)

-                    Thread (reserved=60012KB, committed=15360KB)

-                      Code (reserved=253952KB, committed=52224KB)

-                  Tracing (reserved=32KB, committed=32KB)
"""

HEAP = """12345:
 garbage-first heap   total 442368K, used 150019K [0x00000000d0000000, 0x0000000100000000)
  region size 8192K, 3 young (24576K), 1 survivors (8192K)
 Metaspace       used 180654K, committed 183104K, reserved 1245184K
"""


def test_native_memory_is_committed_mib_by_category_with_the_total() -> None:
    assert p6_memory.parse_native_memory(NMT) == {"Java Heap": 744, "Class": 27, "Thread": 15, "Code": 51,
                                                  "total": 1227}  # Tracing's 32 KB rounds to nothing


def test_heap_is_committed_and_used_mib_of_the_g1_line() -> None:
    assert p6_memory.parse_heap(HEAP) == (432, 146)
    assert p6_memory.parse_heap("12345:\nCould not attach\n") == (0, 0)
