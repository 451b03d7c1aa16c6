"""The consumer-lag gauge: readings on the topic that the store does not hold yet, and where a checkpoint ends."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink.overlap import OverlappedSink
from citysense_scorer.source.offsets import (
    PROBE_GROUP,
    batch_offsets,
    check_resumable,
    committed_offsets,
    partition_ids,
    planned_offsets,
    source_offsets,
    watermarks,
)

log = logging.getLogger(__name__)


class ConsumerLag:
    """The lag gauge (``citysense_scorer_consumer_lag_messages``): messages on the readings topic not processed yet,
    = sum over partitions of (end offset now) - (offset where the last finished micro-batch ended).

    Query progress alone cannot give this: ``lastProgress`` is written when a micro-batch finishes, so its
    ``latestOffset`` is as old as the running batch, and a long batch (a backlog after an outage) read as no lag growth
    at all. Here the ends come from the broker (``ends``: :class:`EndOffsets` in this process, current to a second)
    and only the processed side from where the last batch the store holds ended (:func:`follow_processed`: Spark's
    progress, or the overlapped sink's last finished batch), seeded at start with what the checkpoint last committed,
    so a long first batch after a restart shows its backlog too.
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


def follow_processed(lag: ConsumerLag, progress: dict | None, overlapped: OverlappedSink | None, checkpoint: Path,
                     topic: str) -> None:
    """Move the lag gauge's processed side to what the store holds. Inline sink: Spark's last finished micro-batch
    (its progress). Overlapped sink: the batch the sink last finished - Spark's progress is a batch ahead there,
    and counting the batch still being written as processed would make the gauge read a whole batch low."""
    if overlapped is None:
        lag.update(progress)
    elif (done := overlapped.last_finished) is not None:
        lag.processed_to(batch_offsets(checkpoint, done, topic))


class EndOffsets:
    """Each partition's end offset (the offset its next reading will get), asked of the broker every ``interval_s``
    by a background thread: a gauge scraped every few seconds needs no fresher ends, and asking more often would
    take CPU from the driver's sink under load."""

    def __init__(self, conf: dict[str, Any], topic: str, partitions: list[int], interval_s: float = 1.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._consumer = Consumer({**conf, "group.id": PROBE_GROUP, "enable.auto.commit": False})
        self._partitions = [TopicPartition(topic, p) for p in partitions]
        self._interval_s = interval_s
        self._ends: dict[int, int] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kafka-end-offsets", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._ends = {tp.partition: self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                              for tp in self._partitions}
            except Exception as exc:  # keep asking: a broker restart must not freeze the gauge
                log.warning("asking Kafka for the readings topic's end offsets failed: %s", exc)
            self._stop.wait(self._interval_s)

    def latest(self) -> dict[int, int] | None:
        """The ends as last answered (None until the first answer)."""
        return self._ends

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


def start_lag(settings: ScorerSettings) -> tuple[ConsumerLag, EndOffsets]:
    """The lag gauge's state and the end-offset poller it reads (close it on shutdown).

    Before that, it refuses a checkpoint the query cannot resume on the readings topic (raises
    :class:`~citysense_scorer.source.offsets.KafkaCheckpointError`, which names the fix): this runs before Spark
    starts, so nothing is read."""
    conf = {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}
    topic = settings.readings_topic
    spark_dir = settings.checkpoint_dir / "spark"
    parts = partition_ids(conf, topic)
    marks = watermarks(conf, topic, parts)
    planned = planned_offsets(spark_dir, topic, str(settings.checkpoint_dir))
    if planned:
        check_resumable(topic, planned, {p: high for p, (_, high) in marks.items()}, str(settings.checkpoint_dir))
    # No committed batch yet: the query starts at the first retained offsets (startingOffsets=earliest).
    processed = committed_offsets(spark_dir, topic) or {p: low for p, (low, _) in marks.items()}
    ends = EndOffsets(conf, topic, parts)
    return ConsumerLag(topic, ends.latest, processed), ends
