"""Run the sink of micro-batch N while Spark computes N+1, without losing N if the scorer dies in between.

Spark calls ``foreachBatch`` and starts the next micro-batch only when it returns, so with the sink done inline the
driver's sink (engine, store, Kafka) and the executors' work (read, decode, station health) take turns, and a core
sits idle half of every cycle. :class:`OverlappedSink` collects batch N, writes it to
a write-ahead file, hands it to one sink thread and returns; Spark then commits N and runs N+1's job while the
thread writes N. Before it hands over N+1, the call waits for N to finish, so batches still reach the sink one at
a time and in order, and at most one is in flight.

Why nothing is lost or doubled:

- Spark commits N only after ``foreachBatch`` returned, i.e. after ``wal/<N>.arrow`` is on disk (fsync, atomic
  rename); the sink thread deletes the file once N is fully written.
- A crash before the file is complete leaves N uncommitted: Spark re-runs it on restart.
- A crash after it leaves the file: :meth:`recover` runs every file left, in batch order, through the same sink
  before the query starts. If Spark had not committed N yet it re-runs N too, and the sink's idempotence (the
  engine log's replay of logged batches, the output topics' read-back dedupe, upserts in the store; see
  :mod:`citysense_scorer.sink.micro_batch`) makes the second run a no-op.
- A batch the sink thread fails on fails the next ``foreachBatch`` call (and :meth:`drain`): the query stops with
  that error, its file stays, and the restarted scorer retries it first - as an inline sink's failure makes Spark
  retry the batch.

The lag gauge counts a batch as processed once Spark committed it, so it leaves out the one batch in the sink.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from citysense_scorer import metrics as m

log = logging.getLogger(__name__)
SUFFIX = ".arrow"


class SinkWal:
    """``<root>/<batch id>.arrow``: one collected micro-batch per file, Arrow IPC."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def reset(root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)

    def path(self, batch_id: int) -> Path:
        return self.root / f"{batch_id:012d}{SUFFIX}"

    def write(self, batch_id: int, table: pa.Table) -> None:
        final = self.path(batch_id)
        tmp = final.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            with pa.ipc.new_file(fh, table.schema) as writer:
                writer.write_table(table)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)

    def read(self, batch_id: int) -> pa.Table:
        with pa.OSFile(str(self.path(batch_id)), "rb") as source:  # read into memory: the sink consumes it
            return pa.ipc.open_file(source).read_all()

    def remove(self, batch_id: int) -> None:
        self.path(batch_id).unlink(missing_ok=True)

    def pending(self) -> list[int]:
        return sorted(int(p.name.removesuffix(SUFFIX)) for p in self.root.iterdir()
                      if p.name.endswith(SUFFIX) and p.name.removesuffix(SUFFIX).isdigit())


class OverlappedSink:
    """``foreachBatch`` function: ``run(table, batch_id)`` (the inline sink) on one background thread, one batch
    in flight, each batch in the write-ahead ``wal`` until it is done."""

    def __init__(self, run: Callable[[pa.Table, int], None], wal: SinkWal) -> None:
        self._run = run
        self.wal = wal
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="citysense-sink")
        self._pending: Future[None] | None = None
        self._lock = threading.Lock()
        self.last_finished: int | None = None  # the newest batch the sink has written completely

    def recover(self) -> int:
        """Run every batch a previous process left in the write-ahead files (call before the query starts)."""
        done = 0
        for batch_id in self.wal.pending():
            log.info("batch %d: finishing it from the sink's write-ahead file (the scorer stopped while writing it)",
                     batch_id)
            self._finish(self.wal.read(batch_id), batch_id)
            done += 1
        return done

    def __call__(self, df: Any, batch_id: int) -> None:
        table = df.toArrow()  # runs batch N's Spark job; the sink thread meanwhile writes N-1
        with self._lock:
            laps = m.Laps()
            self._wait()
            laps.lap("handover")
            self.wal.write(batch_id, table)
            laps.lap("wal")
            self._pending = self._pool.submit(self._finish, table, batch_id)

    def drain(self, timeout: float | None = None) -> None:
        """Wait for the batch in flight; raises its failure. After a timeout the batch stays in its file."""
        with self._lock:
            self._wait(timeout)

    def failure(self) -> BaseException | None:
        """The exception of the batch in flight, once it failed (the batch stays in its file)."""
        pending = self._pending
        return pending.exception() if pending is not None and pending.done() else None

    def close(self, timeout: float | None = None) -> None:
        with contextlib.suppress(Exception):
            self.drain(timeout)
        self._pool.shutdown(wait=False)

    def _wait(self, timeout: float | None = None) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result(timeout)  # re-raises the sink's exception

    def _finish(self, table: pa.Table, batch_id: int) -> None:
        self._run(table, batch_id)
        self.wal.remove(batch_id)
        self.last_finished = batch_id
