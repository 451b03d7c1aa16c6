"""Spark streaming source for Kafka written with the Python Data Source API (``format("citysense_kafka")``).

Why not Spark's built-in ``kafka`` source: its connector is not published for the pinned pyspark version
(docs/components.md); it is still selectable with ``CITYSENSE_SCORER_SOURCE=kafka`` when its jars are on the classpath.

Design:
- Offsets are ``{"<partition>": next_offset}`` dicts kept in Spark's checkpoint (offset log); nothing is committed to
  Kafka and no consumer group is joined (partitions are assigned explicitly).
- ``latestOffset`` needs the end of every partition, and when nothing is new it waits for new readings rather than
  run an empty micro-batch. The driver keeps a background :class:`EndOffsetProbe` for both: a consumer assigned to
  all partitions that keeps fetching near the end and records the high watermark that every fetch response carries,
  and wakes ``latestOffset`` when one moves.
- A checkpoint that resumes beyond a partition's end (the topic was deleted and recreated, or a broker lost its log)
  stops the query with :class:`CheckpointBeyondTopic`, which names the fix; reading on would skip readings silently.
- A micro-batch's Kafka partitions are spread over at most ``tasks`` Spark input partitions (Kafka partition p goes
  to task p mod tasks, so a partition stays with the same task); ``read`` consumes each ``[start, end)`` in turn and
  yields Arrow record batches, so no per-row Python objects cross into the JVM. Why not one task per Kafka
  partition: every task costs a Python worker round trip and scheduling, which on a few local cores is most of a
  small micro-batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pyspark.sql.datasource import DataSource, DataSourceStreamReader, InputPartition
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import BinaryType, IntegerType, LongType, StringType, StructField, StructType

log = logging.getLogger(__name__)

SOURCE_NAME = "citysense_kafka"

# The columns the scorer selects from Spark's built-in Kafka source (source/frame.py), so the rest of the job does
# not care which source produced the rows. timestamp_type is Kafka's id: 0 CreateTime, 1 LogAppendTime, -1 none.
SCHEMA = StructType([
    StructField("key", BinaryType()),
    StructField("value", BinaryType()),
    StructField("topic", StringType()),
    StructField("partition", IntegerType()),
    StructField("offset", LongType()),
    StructField("timestamp_ms", LongType()),
    StructField("timestamp_type", IntegerType()),
])
ARROW_SCHEMA = pa.schema([
    ("key", pa.binary()), ("value", pa.binary()), ("topic", pa.string()), ("partition", pa.int32()),
    ("offset", pa.int64()), ("timestamp_ms", pa.int64()), ("timestamp_type", pa.int32()),
])
# Rows per Arrow batch handed to Spark: large enough to amortise the hand-over, small enough to bound memory.
ARROW_BATCH_ROWS = 20_000
READ_TIMEOUT_S = 120.0


def _client_config(options: dict[str, str]) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": options["bootstrap"]}
    conf.update(json.loads(options.get("kafka_options") or "{}"))
    return conf


def partition_ids(conf: dict[str, Any], topic: str, timeout: float = 30.0) -> list[int]:
    """The topic's partitions; raises when the topic does not exist (the job creates it on start)."""
    from confluent_kafka.admin import AdminClient

    meta = AdminClient(conf).list_topics(topic=topic, timeout=timeout)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise RuntimeError(f"Kafka topic {topic!r} is not available: {info.error if info else 'missing'}")
    return sorted(info.partitions)


class CheckpointBeyondTopic(RuntimeError):
    """The scorer's checkpoint resumes where the Kafka topic has no readings; the message names the fix."""


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
            f"Fix: stop the scorer and delete {checkpoint} to score the topic from its first retained reading "
            f"(re-scoring writes the same rows and alert ids), or point CITYSENSE_KAFKA_BOOTSTRAP at the Kafka "
            f"this checkpoint belongs to.")


def end_offsets(conf: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's end (the offset the next reading will get), from the broker."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**conf, "group.id": "citysense-scorer-probe"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    finally:
        consumer.close()


def low_offsets(conf: dict[str, Any], topic: str, partitions: list[int]) -> dict[int, int]:
    """Each partition's first retained offset (where ``startingOffsets=earliest`` begins)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**conf, "group.id": "citysense-scorer-probe"})
    try:
        lows = {}
        for p in partitions:
            low, _ = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            lows[p] = max(0, low)
        return lows
    finally:
        consumer.close()


class EndOffsetProbe:
    """Learns each partition's end offset from fetch responses, in a background thread.

    The probe stays positioned one message before the end of each partition, so every fetch carries a fresh high
    watermark while transferring at most a few messages; when it falls behind it seeks forward instead of reading.
    Besides the source (which runs in a Python worker that Spark starts for it), the scorer's driver process keeps
    one for its lag gauge (:class:`citysense_scorer.job.lag.ConsumerLag`), with a longer ``fetch_wait_ms`` and a
    pause of ``interval_s`` between rounds: a gauge scraped every few seconds does not need a fresh end every fetch,
    and polling flat out under load takes CPU from the driver's sink.
    """

    def __init__(self, conf: dict[str, Any], topic: str, partitions: list[int], start: dict[int, int],
                 fetch_wait_ms: int = 50, interval_s: float = 0.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._interval_s = interval_s
        self._topic = topic
        self._ends: dict[int, int] = {p: int(start.get(p, 0)) for p in partitions}
        self._highs: dict[int, int] = {}  # the broker's latest high watermark per partition, never raised to start
        self._fresh: set[int] = set()
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)  # notified when an end offset moves forward
        self._stop = threading.Event()
        self._consumer = Consumer({
            **conf,
            "group.id": "citysense-scorer-probe",  # required by the client; never joined (assign only)
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": fetch_wait_ms,
            "fetch.max.bytes": 1024 * 1024,
            "max.partition.fetch.bytes": 64 * 1024,
            "queued.max.messages.kbytes": 1024,
            "enable.partition.eof": True,
        })
        self._consumer.assign([TopicPartition(topic, p, max(0, start.get(p, 0) - 1)) for p in partitions])
        self._tp = TopicPartition
        self._thread = threading.Thread(target=self._run, name="kafka-end-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:  # keep probing: a transient broker error must not freeze the stream
                log.exception("end-offset probe failed; retrying")
                time.sleep(0.5)
            if self._interval_s:
                self._stop.wait(self._interval_s)

    def _poll_once(self) -> None:
        msgs = self._consumer.consume(num_messages=1000, timeout=0.1)
        seen: dict[int, int] = {}
        for msg in msgs:
            if msg.error() is None:
                seen[msg.partition()] = max(seen.get(msg.partition(), 0), msg.offset() + 1)
            elif msg.error().code() == -191:  # _PARTITION_EOF: the fetch position is the end
                seen[msg.partition()] = max(seen.get(msg.partition(), 0), msg.offset())
        with self._lock:
            for p in list(self._ends):
                _, high = self._consumer.get_watermark_offsets(self._tp(self._topic, p), cached=True)
                end = max(self._ends[p], seen.get(p, 0), high if high is not None and high >= 0 else 0)
                if high is not None and high >= 0:
                    self._highs[p] = high
                if high is not None and high >= 0 or p in seen:
                    self._fresh.add(p)
                if end > self._ends[p]:
                    self._ends[p] = end
                    self._grew.notify_all()
        # Skip ahead rather than reading everything a second time: only the watermark matters here.
        for p, end in list(self._ends.items()):
            pos = seen.get(p)
            if pos is not None and end - pos > 100:
                with contextlib.suppress(Exception):  # seek races with the fetcher; the next round retries
                    self._consumer.seek(self._tp(self._topic, p, end - 1))

    def ready(self) -> bool:
        """True once every partition has answered (before that, :meth:`ends` may still be the start offsets)."""
        with self._lock:
            return len(self._fresh) == len(self._ends)

    def ends(self, wait_fresh: float = 5.0) -> dict[int, int]:
        """Current end offsets; on first use waits (bounded) until every partition has answered once."""
        deadline = time.monotonic() + wait_fresh
        while time.monotonic() < deadline:
            with self._lock:
                if len(self._fresh) == len(self._ends):
                    break
            time.sleep(0.02)
        with self._lock:
            return dict(self._ends)

    def highs(self) -> dict[int, int]:
        """The broker's high watermarks as last reported (partitions not heard from yet are missing)."""
        with self._lock:
            return dict(self._highs)

    def ends_beyond(self, offsets: dict[int, int], timeout: float) -> dict[int, int]:
        """Current end offsets once some partition's end is past ``offsets``, or after ``timeout`` s (then they may
        equal ``offsets``: nothing new arrived)."""
        with self._grew:
            self._grew.wait_for(lambda: _beyond(self._ends, offsets), timeout)
            return dict(self._ends)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._consumer.close()


def _beyond(ends: dict[int, int], offsets: dict[int, int]) -> bool:
    """Some partition's end is past its offset in ``offsets`` (new readings to read)."""
    return any(end > offsets.get(p, 0) for p, end in ends.items())


@dataclass
class KafkaRange(InputPartition):
    topic: str
    partition: int
    start: int
    end: int


@dataclass
class KafkaRanges(InputPartition):
    """One Spark task's share of a micro-batch: ranges of one or more Kafka partitions, read one after another."""

    ranges: tuple[KafkaRange, ...]


def group_ranges(ranges: list[KafkaRange], tasks: int) -> list[KafkaRanges]:
    """Spread ranges over at most ``tasks`` input partitions (0: one per range). Kafka partition p always goes to
    task p mod tasks, so which task reads a partition does not depend on which other partitions have new data."""
    if tasks <= 0:
        return [KafkaRanges((rng,)) for rng in ranges]
    groups: dict[int, list[KafkaRange]] = {}
    for rng in sorted(ranges, key=lambda r: r.partition):
        groups.setdefault(rng.partition % tasks, []).append(rng)
    return [KafkaRanges(tuple(groups[task])) for task in sorted(groups)]


class _PooledConsumer:
    """A reader's consumer kept alive in its Python worker between micro-batches.

    Spark reuses Python workers (``spark.python.worker.reuse``), so a consumer cached at module level survives from
    one task to the next. Creating one per task would cost a connection, metadata and a cold first fetch every
    batch, the bulk of a small batch; a pooled one is already connected and, when the next range starts where the
    last ended, has the next messages prefetched.
    """

    def __init__(self, conf: dict[str, Any]) -> None:
        from confluent_kafka import Consumer

        self.consumer = Consumer({
            **conf,
            "group.id": "citysense-scorer-reader",  # never joined: partitions are assigned explicitly
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 20,
            # Bounded prefetch per idle pooled consumer.
            "queued.max.messages.kbytes": 16384,
        })
        self.next_offset: int | None = None  # where the assigned partition's stream continues

    def position_at(self, topic: str, partition: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        if self.next_offset != offset:
            self.consumer.assign([TopicPartition(topic, partition, offset)])
            self.next_offset = offset


_POOL: dict[tuple[str, str, int], _PooledConsumer] = {}


def _pooled(conf: dict[str, Any], rng: KafkaRange) -> _PooledConsumer:
    key = (json.dumps(conf, sort_keys=True), rng.topic, rng.partition)
    pooled = _POOL.get(key)
    if pooled is None:
        pooled = _POOL[key] = _PooledConsumer(conf)
    return pooled


def _discard(conf: dict[str, Any], rng: KafkaRange) -> None:
    pooled = _POOL.pop((json.dumps(conf, sort_keys=True), rng.topic, rng.partition), None)
    if pooled is not None:
        with contextlib.suppress(Exception):
            pooled.consumer.close()


def close_pool() -> None:
    """Close every pooled consumer of this process (tests; a worker process otherwise closes them on exit)."""
    for key in list(_POOL):
        with contextlib.suppress(Exception):
            _POOL.pop(key).consumer.close()


def read_range(conf: dict[str, Any], rng: KafkaRange) -> Iterator[pa.RecordBatch]:
    """Consume ``[start, end)`` of one partition as Arrow record batches (runs in a Spark Python worker)."""
    from confluent_kafka import KafkaError

    pooled = _pooled(conf, rng)
    consumer = pooled.consumer
    ok = False
    try:
        pooled.position_at(rng.topic, rng.partition, rng.start)
        cols: dict[str, list] = {name: [] for name in ARROW_SCHEMA.names}
        next_offset = rng.start
        deadline = time.monotonic() + READ_TIMEOUT_S
        while next_offset < rng.end:
            msgs = consumer.consume(num_messages=min(10_000, rng.end - next_offset), timeout=0.2)
            for msg in msgs:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= rng.end:
                            next_offset = rng.end
                        continue
                    raise RuntimeError(f"Kafka read of {rng.topic}[{rng.partition}] failed: {err}")
                offset = msg.offset()
                if offset >= rng.end:
                    # Read past the range (prefetched): the pooled consumer must restart at rng.end next time.
                    next_offset = rng.end
                    pooled.next_offset = None
                    break
                next_offset = offset + 1
                cols["key"].append(msg.key())
                cols["value"].append(msg.value())
                cols["offset"].append(offset)
                kind, stamp = msg.timestamp()
                cols["timestamp_ms"].append(stamp)
                cols["timestamp_type"].append(kind - 1)  # confluent-kafka's TIMESTAMP_* constants are Kafka's id + 1
            if len(cols["offset"]) >= ARROW_BATCH_ROWS:
                yield _batch(cols, rng)
                cols = {name: [] for name in ARROW_SCHEMA.names}
            if next_offset < rng.end and time.monotonic() > deadline:
                # Failing the task (Spark retries it) is better than silently returning fewer rows.
                raise TimeoutError(f"{rng.topic}[{rng.partition}] stopped at {next_offset}, expected {rng.end}")
        if cols["offset"]:
            yield _batch(cols, rng)
        if pooled.next_offset is not None:
            pooled.next_offset = rng.end
        ok = True
    finally:
        if not ok:
            # An error or an abandoned iterator leaves the consumer's position unknown: start afresh next time.
            _discard(conf, rng)


def read_ranges(conf: dict[str, Any], ranges: tuple[KafkaRange, ...]) -> Iterator[pa.RecordBatch]:
    """:func:`read_range` over each range in turn (one Spark task reading several Kafka partitions)."""
    for rng in ranges:
        yield from read_range(conf, rng)


def _batch(cols: dict[str, list], rng: KafkaRange) -> pa.RecordBatch:
    n = len(cols["offset"])
    return pa.RecordBatch.from_arrays([
        pa.array(cols["key"], pa.binary()),
        pa.array(cols["value"], pa.binary()),
        pa.array([rng.topic] * n, pa.string()),
        pa.array([rng.partition] * n, pa.int32()),
        pa.array(cols["offset"], pa.int64()),
        pa.array(cols["timestamp_ms"], pa.int64()),
        pa.array(cols["timestamp_type"], pa.int32()),
    ], schema=ARROW_SCHEMA)


def _decoder(options: dict[str, str]) -> Any:
    """With the ``registry`` option (registry JSON, plus ``future_tolerance_s``) the source decodes and validates
    every message in the reading task (:mod:`citysense_scorer.source.decode`) and yields decoded rows; without it, raw
    Kafka rows."""
    if not options.get("registry"):
        return None
    from citysense_scorer.source.decode import decoder_for

    return decoder_for(options["registry"], float(options.get("future_tolerance_s", "300")))


BURST_GATHER_S = 0.1  # after a wait for new readings ends, how long more to gather (see latestOffset)


class KafkaStreamReader(DataSourceStreamReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.options = dict(options)
        self.topic = options["topic"]
        self.max_per_trigger = int(options.get("max_offsets_per_trigger") or 0)
        self.tasks = int(options.get("tasks") or 0)
        self.wait_s = int(options.get("wait_ms") or 0) / 1000
        self._probe: EndOffsetProbe | None = None

    def _conf(self) -> dict[str, Any]:
        return _client_config(self.options)

    def initialOffset(self) -> dict:
        parts = partition_ids(self._conf(), self.topic)
        return {str(p): off for p, off in low_offsets(self._conf(), self.topic, parts).items()}

    def _ensure_probe(self, start: dict) -> EndOffsetProbe:
        if self._probe is None:
            parts = partition_ids(self._conf(), self.topic)
            self._probe = EndOffsetProbe(self._conf(), self.topic, parts, {p: int(start.get(str(p), 0)) for p in parts})
        return self._probe

    def latestOffset(self, start: dict | None = None, limit: Any = None) -> dict:  # noqa: N802 - Spark's name
        start = start or self.initialOffset()
        probe = self._ensure_probe(start)
        ends = probe.ends()
        begin = {p: int(start.get(str(p), 0)) for p in ends}
        highs = probe.highs()
        check_resumable(self.topic, {p: o for p, o in begin.items() if p in highs}, highs,
                        self.options.get("checkpoint", "the scorer's checkpoint folder"))
        if self.wait_s and not _beyond(ends, begin):
            # Nothing new: Spark would run a no-data micro-batch now (the health operator's processing-time timers
            # ask for one on every trigger). Readings that land while it runs - a fleet reporting on the second
            # sends them all at once - then wait for it to finish before their own batch starts. A long poll for
            # them first; if none come, the no-data batch still runs, at most wait_ms later (offline timers are
            # minutes).
            began = time.monotonic()
            ends = probe.ends_beyond(begin, self.wait_s)
            if _beyond(ends, begin):
                # The first readings of a burst ended the wait; the rest of it follows within milliseconds and
                # would otherwise miss this batch and wait a whole micro-batch for the next one.
                time.sleep(max(0.0, min(BURST_GATHER_S, self.wait_s - (time.monotonic() - began))))
                ends = probe.ends(0)
        latest = {str(p): max(end, begin.get(p, 0)) for p, end in ends.items()}
        max_rows = getattr(limit, "max_rows", None) or self.max_per_trigger
        if max_rows:
            latest = _cap(start, latest, int(max_rows))
        return latest

    def reportLatestOffset(self) -> dict | None:  # noqa: N802
        return None if self._probe is None else {str(p): e for p, e in self._probe.ends(0).items()}

    def partitions(self, start: dict, end: dict) -> list[KafkaRanges]:
        return group_ranges([
            KafkaRange(self.topic, int(p), int(start.get(p, 0)), int(e))
            for p, e in sorted(end.items(), key=lambda kv: int(kv[0]))
            if int(e) > int(start.get(p, 0))
        ], self.tasks)

    def read(self, partition: KafkaRanges) -> Iterator[pa.RecordBatch]:  # type: ignore[override]
        from citysense_scorer.worker_gc import freeze_once

        freeze_once()
        batches = read_ranges(self._conf(), partition.ranges)
        decoder = _decoder(self.options)
        return batches if decoder is None else decoder.decode_batches(batches)

    def commit(self, end: dict) -> None:
        pass

    def stop(self) -> None:
        if self._probe is not None:
            self._probe.close()
            self._probe = None


def _cap(start: dict, latest: dict, max_rows: int) -> dict:
    """Spread ``max_rows`` over partitions in proportion to their backlog (like Spark's maxOffsetsPerTrigger)."""
    backlog = {p: latest[p] - int(start.get(p, 0)) for p in latest}
    total = sum(backlog.values())
    if total <= max_rows:
        return latest
    capped = {}
    for p, lag in backlog.items():
        take = int(lag * max_rows / total) if total else 0
        capped[p] = int(start.get(p, 0)) + max(take, min(lag, 1))
    return capped


class KafkaDataSource(DataSource):
    """``spark.readStream.format("citysense_kafka").option("bootstrap", ...).option("topic", ...)``."""

    @classmethod
    def name(cls) -> str:
        return SOURCE_NAME

    def schema(self) -> StructType:
        decoder = _decoder(self.options)
        return SCHEMA if decoder is None else from_arrow_schema(decoder.schema)

    def streamReader(self, schema: StructType) -> KafkaStreamReader:  # noqa: N802 - Spark's name
        return KafkaStreamReader(self.options)
