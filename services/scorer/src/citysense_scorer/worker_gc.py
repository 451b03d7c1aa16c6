"""Keep PySpark's per-task garbage collection cheap in the scorer's reused Python workers.

PySpark's worker daemon runs a full ``gc.collect()`` after every task. With pandas, pyarrow, a Kafka consumer and
the detectors loaded, that walk was a quarter of the Python workers' CPU (py-spy, P1 at 1,000 stations). Whatever
is alive when a worker starts its first task (modules, the decoder, the stateful processor) lives as long as the
worker anyway, so it is moved out of the collector's reach once; objects made by later tasks are still collected.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_once() -> None:
    global _frozen  # noqa: PLW0603 - one flag per worker process
    if not _frozen:
        gc.freeze()
        _frozen = True


def frozen() -> bool:
    return _frozen
