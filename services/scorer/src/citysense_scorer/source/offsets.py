"""Where the readings topic starts and ends, and whether the scorer's checkpoint can resume on it.

Spark's Kafka source keeps its offsets in the query's checkpoint (``offsets/<batch>``: a version line, a metadata
line, then one line per source, ``{"<topic>": {"<partition>": next_offset}}``); nothing is committed to Kafka and no
consumer group is joined. The driver asks the broker here, with confluent-kafka, for what Spark does not say: a
partition's first retained and next offset, before the query starts (:func:`check_resumable`) and for the lag gauge
(:mod:`citysense_scorer.job.lag`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PROBE_GROUP = "citysense-scorer-probe"  # required by the client; never joined (partitions are named explicitly)


def partition_ids(conf: dict[str, Any], topic: str, timeout: float = 30.0) -> list[int]:
    """The topic's partitions; raises when the topic does not exist (the job creates it on start)."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient(conf).list_topics(topic=topic, timeout=timeout)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise RuntimeError(f"Kafka topic {topic!r} is not available: {info.error if info else 'missing'}")
    return sorted(info.partitions)


def watermarks(conf: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, tuple[int, int]]:
    """Each partition's (first retained offset, next offset), from the broker."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**conf, "group.id": PROBE_GROUP, "enable.auto.commit": False})
    try:
        marks = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            marks[p] = (max(0, low), max(0, high))
        return marks
    finally:
        consumer.close()


class KafkaCheckpointError(RuntimeError):
    """The scorer's checkpoint cannot be resumed on this Kafka topic; the message names the fix."""


class CheckpointBeyondTopic(KafkaCheckpointError):
    """The checkpoint resumes where the Kafka topic has no readings (the topic was deleted and recreated)."""


class CheckpointOfAnotherReader(KafkaCheckpointError):
    """The checkpoint's offsets are not in the format of Spark's Kafka source."""


def _fix(checkpoint: str) -> str:
    return (f"Fix: stop the scorer and delete {checkpoint} to score the topic from its first retained reading "
            f"(re-scoring writes the same rows and alert ids)")


def check_resumable(topic: str, resume: dict[int, int], ends: dict[int, int], checkpoint: str) -> None:
    """Raise :class:`CheckpointBeyondTopic` when ``resume`` (next offset per partition, from the checkpoint) lies beyond
    a partition's end or names a partition the topic no longer has."""
    problems = []
    for partition, offset in sorted(resume.items()):
        if partition not in ends:
            problems.append(f"partition {partition} no longer exists")
        elif offset > ends[partition]:
            problems.append(f"partition {partition} ends at offset {ends[partition]} but the checkpoint resumes at "
                            f"{offset}")
    if problems:
        raise CheckpointBeyondTopic(
            f"the scorer's checkpoint does not match Kafka topic {topic!r}: {'; '.join(problems)}. The topic was "
            f"deleted and recreated, or its broker lost its log; reading on would skip readings, so nothing is read. "
            f"{_fix(checkpoint)}, or point CITYSENSE_KAFKA_BOOTSTRAP at the Kafka this checkpoint belongs to.")


def lost_to_retention(conf: dict[str, Any], topic: str, resume: dict[int, int]) -> dict[int, int]:
    """Per partition, how many readings before its first retained offset ``resume`` still wanted (Kafka's retention
    deleted them unread); partitions that lost none are left out."""
    marks = watermarks(conf, topic, sorted(resume))
    return {p: low - resume[p] for p, (low, _) in marks.items() if resume[p] < low}


def source_offsets(doc: Any, topic: str) -> dict[int, int] | None:
    """``{partition: offset}`` from a Kafka source offset as progress and the checkpoint write it,
    ``{"<topic>": {"0": 12}}`` (JSON text or parsed); a bare ``{"0": 12}`` is read as the topic's too."""
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


def _batches(checkpoint: Path, log: str) -> list[int]:
    try:
        return sorted(int(f.name) for f in (checkpoint / log).iterdir() if f.name.isdigit())
    except OSError:
        return []


def _source_line(checkpoint: Path, batch_id: int) -> str | None:
    """The source's line of Spark's offset log for ``batch_id`` (None: not planned, purged or unreadable)."""
    try:
        lines = (checkpoint / "offsets" / str(batch_id)).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return lines[2] if len(lines) >= 3 else None


def batch_offsets(checkpoint: Path, batch_id: int, topic: str) -> dict[int, int] | None:
    """Where micro-batch ``batch_id`` of a Spark checkpoint ends (None: not planned, purged or unreadable)."""
    line = _source_line(checkpoint, batch_id)
    return None if line is None else source_offsets(line, topic)


def committed_offsets(checkpoint: Path, topic: str) -> dict[int, int] | None:
    """Where the last committed micro-batch of a Spark checkpoint ended (None: nothing committed or unreadable).
    ``commits/<batch>`` exists once that batch finished."""
    done = _batches(checkpoint, "commits")
    return batch_offsets(checkpoint, done[-1], topic) if done else None


def planned_offsets(checkpoint: Path, topic: str, fix_path: str) -> dict[int, int] | None:
    """Where the last planned micro-batch of a Spark checkpoint ends: the farthest the query reads on restart (it
    re-runs a planned batch that did not finish). None for a fresh checkpoint. Raises
    :class:`CheckpointOfAnotherReader` when the offsets are not Spark's Kafka source's ``{"<topic>": {...}}``."""
    planned = _batches(checkpoint, "offsets")
    if not planned:
        return None
    line = _source_line(checkpoint, planned[-1])
    try:
        doc = json.loads(line) if line is not None else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get(topic), dict):
        raise CheckpointOfAnotherReader(
            f"the scorer's checkpoint was not written by Spark's Kafka source reading {topic!r} (offsets "
            f"{(line or '')[:200]!r}): it belongs to an older scorer's Kafka reader or to another topic. "
            f"{_fix(fix_path)}.")
    return source_offsets(doc, topic)
