"""The consumer-lag gauge: readings on the topic that the store does not hold yet, and where a checkpoint ends."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink.overlap import OverlappedSink


class ConsumerLag:
    """The lag gauge (``citysense_scorer_consumer_lag_messages``): messages on the readings topic not processed yet,
    = sum over partitions of (end offset now) - (offset where the last finished micro-batch ended).

    Query progress alone cannot give this: ``lastProgress`` is written when a micro-batch finishes, so its
    ``latestOffset`` is as old as the running batch, and a long batch (a backlog after an outage) read as no lag growth
    at all. Here the ends come from an :class:`~citysense_scorer.source.kafka_datasource.EndOffsetProbe` in this process
    (``ends``, current to a fraction of a second) and only the processed side from where the last batch the store holds
    ended (:func:`follow_processed`: Spark's progress, or the overlapped sink's last finished batch), seeded
    at start with what the checkpoint last committed, so a long first batch after a restart shows its backlog too.
    """

    def __init__(self, topic: str, ends: Callable[[], dict[int, int] | None],
                 processed: dict[int, int] | None = None) -> None:
        self.topic = topic
        self._ends = ends
        self._processed: dict[int, int] = dict(processed or {})

    def update(self, progress: dict | None) -> None:
        """Take the processed offsets from a ``query.lastProgress`` (no-op when there is none yet)."""
        sources = (progress or {}).get("sources") or []
        self.processed_to(source_offsets(sources[0].get("endOffset"), self.topic) if sources else None)

    def processed_to(self, offsets: dict[int, int] | None) -> None:
        """Readings before ``offsets`` are processed (never moves back: a re-run batch does not undo progress)."""
        for p, off in (offsets or {}).items():
            self._processed[p] = max(self._processed.get(p, 0), off)

    def value(self) -> int | None:
        """Current lag, or None while the ends or the processed offsets of some partition are unknown."""
        ends = self._ends()
        if not ends or any(p not in self._processed for p in ends):
            return None
        return sum(max(0, end - self._processed[p]) for p, end in ends.items())


def source_offsets(doc: Any, topic: str) -> dict[int, int] | None:
    """``{partition: offset}`` from a Kafka source offset as progress and the checkpoint write it: the bundled
    source's ``{"0": 12}`` or Spark's built-in source's ``{"<topic>": {"0": 12}}`` (JSON text or parsed)."""
    try:
        if isinstance(doc, str):
            doc = json.loads(doc)
        if isinstance(doc, dict) and isinstance(doc.get(topic), dict):
            doc = doc[topic]
        if not isinstance(doc, dict) or not doc:
            return None
        return {int(p): int(off) for p, off in doc.items()}
    except (ValueError, TypeError):
        return None


def committed_offsets(checkpoint: Path, topic: str) -> dict[int, int] | None:
    """Where the last committed micro-batch of a Spark checkpoint ended (None: nothing committed or unreadable).
    ``commits/<batch>`` exists once that batch finished."""
    try:
        done = [int(f.name) for f in (checkpoint / "commits").iterdir() if f.name.isdigit()]
    except OSError:
        return None
    return batch_offsets(checkpoint, max(done), topic) if done else None


def batch_offsets(checkpoint: Path, batch_id: int, topic: str) -> dict[int, int] | None:
    """Where micro-batch ``batch_id`` of a Spark checkpoint ends (None: not planned, purged or unreadable). Spark's
    offset log ``offsets/<batch>`` is ``v1``, a metadata line, then one line per source."""
    try:
        lines = (checkpoint / "offsets" / str(batch_id)).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return source_offsets(lines[2], topic) if len(lines) >= 3 else None


def follow_processed(lag: ConsumerLag, progress: dict | None, overlapped: OverlappedSink | None, checkpoint: Path,
                     topic: str) -> None:
    """Move the lag gauge's processed side to what the store holds. Inline sink: Spark's last finished micro-batch
    (its progress). Overlapped sink: the batch the sink last finished - Spark's progress is a batch ahead there,
    and counting the batch still being written as processed would make the gauge read a whole batch low."""
    if overlapped is None:
        lag.update(progress)
    elif (done := overlapped.last_finished) is not None:
        lag.processed_to(batch_offsets(checkpoint, done, topic))


def start_lag(settings: ScorerSettings) -> tuple[ConsumerLag, Any]:
    """The lag gauge's state and the end-offset probe it reads (close it on shutdown)."""
    from citysense_scorer.source.kafka_datasource import (
        EndOffsetProbe,
        check_resumable,
        end_offsets,
        low_offsets,
        partition_ids,
    )

    conf = {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}
    topic = settings.readings_topic
    parts = partition_ids(conf, topic)
    committed = committed_offsets(settings.checkpoint_dir / "spark", topic)
    if committed:
        check_resumable(topic, committed, end_offsets(conf, topic, parts), str(settings.checkpoint_dir))
    # No committed batch yet: the query starts at the earliest retained offsets (startingOffsets=earliest).
    processed = committed or low_offsets(conf, topic, parts)
    probe = EndOffsetProbe(conf, topic, parts, {p: processed.get(p, 0) for p in parts}, fetch_wait_ms=500,
                           interval_s=1.0)
    return ConsumerLag(topic, lambda: probe.ends(0) if probe.ready() else None, processed), probe
