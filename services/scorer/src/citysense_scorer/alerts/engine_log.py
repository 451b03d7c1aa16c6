"""Durable engine state next to Spark's checkpoint: a per-batch log plus periodic snapshots.

Layout under the checkpoint dir (``<data_dir>/checkpoints/scorer`` by default)::

    spark/                 Spark's own checkpoint (offsets, commits, sources)
    sink-wal/<batch>.arrow a collected micro-batch until the overlapped sink finished it (sink.overlap)
    engine/log/<batch>     the batch's engine input and the alert events it produced (pickle, atomic rename)
    engine/snap/<batch>    the full engine state after <batch> (every N batches)
    engine/done/<batch>    written after every event/dead letter of <batch> was acknowledged by Kafka; holds the
                           output topics' end positions, where a read-back after a crash starts

Recovery: load the newest snapshot, re-apply the logged inputs after it (the engine is deterministic), and the
engine is exactly at the last logged batch. Spark then re-runs its last uncommitted batch N; if ``log/N`` exists the
engine does not apply N twice - it re-sends N's logged events, skipping those already on the topic.
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any

from citysense_scorer.alerts.engine import AlertEngine, BatchInput
from citysense_scorer.alerts.engine_upgrade import load_state, unpickle


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class EngineLog:
    def __init__(self, root: Path, snapshot_every: int = 50, keep: int = 200) -> None:
        self.root = root
        self.log_dir, self.snap_dir, self.done_dir = root / "log", root / "snap", root / "done"
        for d in (self.log_dir, self.snap_dir, self.done_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.snapshot_every = snapshot_every
        self.keep = keep

    @staticmethod
    def reset(root: Path) -> None:
        shutil.rmtree(root, ignore_errors=True)

    @staticmethod
    def _ids(directory: Path) -> list[int]:
        return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())

    def recover(self, engine: AlertEngine) -> None:
        snaps = self._ids(self.snap_dir)
        if snaps:
            engine.state = load_state((self.snap_dir / str(snaps[-1])).read_bytes(), engine)
        for batch_id in self._ids(self.log_dir):
            if batch_id > engine.state.version:
                entry = self.read(batch_id)
                data = entry["input"]
                if len(data.stations) or getattr(data, "clocks", None) is not None and len(data.clocks):
                    engine.apply(batch_id, data)
                engine.state.version = batch_id

    def read(self, batch_id: int) -> dict[str, Any]:
        return unpickle((self.log_dir / str(batch_id)).read_bytes())

    def has(self, batch_id: int) -> bool:
        return (self.log_dir / str(batch_id)).exists()

    def write(self, batch_id: int, data: BatchInput, events: list, dead_letters: list, engine: AlertEngine, *,
              watermark: int) -> None:
        payload = {"input": data, "events": events, "dead_letters": dead_letters, "watermark": watermark}
        _atomic_write(self.log_dir / str(batch_id), pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        if batch_id % self.snapshot_every == 0:
            _atomic_write(self.snap_dir / str(batch_id), pickle.dumps(engine.state, protocol=pickle.HIGHEST_PROTOCOL))
            self._prune(batch_id)

    def _prune(self, snapshot_id: int) -> None:
        # Logs up to the snapshot are no longer needed for recovery; keep a few for inspection.
        for directory in (self.log_dir, self.done_dir):
            for batch_id in self._ids(directory):
                if batch_id < snapshot_id - self.keep:
                    (directory / str(batch_id)).unlink(missing_ok=True)
        for batch_id in self._ids(self.snap_dir)[:-2]:
            (self.snap_dir / str(batch_id)).unlink(missing_ok=True)

    def mark_done(self, batch_id: int, positions: dict[str, dict[int, int]]) -> None:
        _atomic_write(self.done_dir / str(batch_id), pickle.dumps(positions))

    def is_done(self, batch_id: int) -> bool:
        return (self.done_dir / str(batch_id)).exists()

    def last_positions(self, before: int) -> dict[str, dict[int, int]]:
        """Output-topic positions recorded by the newest finished batch before ``before`` ({} if none)."""
        merged: dict[str, dict[int, int]] = {}
        for batch_id in self._ids(self.done_dir):
            if batch_id < before:
                for topic, parts in pickle.loads((self.done_dir / str(batch_id)).read_bytes()).items():  # noqa: S301
                    merged.setdefault(topic, {}).update(parts)
        return merged
