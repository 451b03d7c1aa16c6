"""Keep PySpark's per-task garbage collection cheap in the scorer's reused Python workers.

PySpark's worker daemon runs a full ``gc.collect()`` after every task, which walks every object alive: with pandas,
pyarrow, a Kafka consumer and the detectors loaded, a large share of the Python workers' CPU. Whatever is alive when a
worker starts its first task (modules, the decoder, the stateful processor) lives as long as the worker anyway, so it is
moved out of the collector's reach once; objects made by later tasks are still collected.
"""

from __future__ import annotations

import gc

_frozen = False


def freeze_once() -> None:
    global _frozen  # noqa: PLW0603 - one flag per worker process
    if not _frozen:
        gc.freeze()
        _frozen = True


def freeze_kept() -> None:
    """Move what is alive now out of the collector's reach: call at the start of a task of a worker that keeps
    state between tasks (the health buckets, see :mod:`citysense_scorer.health.spark`). The daemon collected after
    the previous task, so what is alive is that kept state and this task's input; without this, every per-task
    collection would walk the kept detectors of all the worker's stations again.
    A frozen object is still freed by reference counting when the next batch replaces it; only a reference cycle
    alive at this moment would stay."""
    gc.freeze()


def frozen() -> bool:
    return _frozen
