"""``citysense-scorer stream``: build the streaming query and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citysense_common.kafka import default_topics, ensure_topics, wait_for_broker
from citysense_common.store.factory import open_store

from citysense_scorer import metrics as m
from citysense_scorer.engine import AlertEngine
from citysense_scorer.engine_log import EngineLog
from citysense_scorer.rules import duration_ms, load_rules
from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink import BatchSink
from citysense_scorer.sink_overlap import OverlappedSink, SinkWal

log = logging.getLogger(__name__)


def source_frame(spark: Any, settings: ScorerSettings) -> Any:
    """Decoded, validated rows (see :mod:`citysense_scorer.decode`) from the configured source."""
    registry = settings.registry()
    if settings.scorer_source == "kafka":
        from citysense_scorer.decode import Decoder

        reader = (spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", settings.bootstrap)
                  .option("subscribe", settings.readings_topic)
                  .option("startingOffsets", "earliest")
                  .option("failOnDataLoss", "false"))
        for name, value in settings.kafka_options.items():
            reader = reader.option(f"kafka.{name}", value)
        if settings.scorer_max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", settings.scorer_max_offsets_per_trigger)
        raw = reader.load().selectExpr("key", "value", "topic", "partition", "offset",
                                       "unix_millis(timestamp) AS timestamp_ms",
                                       "timestampType AS timestamp_type")
        decoder = Decoder(registry, settings.scorer_future_tolerance_s)
        from pyspark.sql.pandas.types import from_arrow_schema

        return raw.mapInArrow(decoder.decode_batches, from_arrow_schema(decoder.schema))
    import json

    return (spark.readStream.format("citysense_kafka")
            .option("bootstrap", settings.bootstrap)
            .option("topic", settings.readings_topic)
            .option("kafka_options", json.dumps(settings.kafka_options))
            .option("max_offsets_per_trigger", str(settings.scorer_max_offsets_per_trigger))
            .option("tasks", str(settings.scorer_source_tasks))
            .option("wait_ms", str(settings.scorer_source_wait_ms))
            .option("registry", registry.model_dump_json())
            .option("future_tolerance_s", str(settings.scorer_future_tolerance_s))
            .option("checkpoint", str(settings.checkpoint_dir))
            .load())


def start_query(spark: Any, settings: ScorerSettings, sink: Callable[[Any, int], None]) -> Any:
    from citysense_scorer.health_wiring import health_stream

    registry = settings.registry()
    # sensor faults, offline timers, baselines, forecasts (one stateful operator keyed by station)
    scored = health_stream(source_frame(spark, settings), settings, registry)
    writer = (scored.writeStream.queryName("citysense-scorer").foreachBatch(sink)
              .option("checkpointLocation", str(settings.checkpoint_dir / "spark")))
    if settings.scorer_trigger_ms:
        writer = writer.trigger(processingTime=f"{settings.scorer_trigger_ms} milliseconds")
    return writer.start()


def build_sink(settings: ScorerSettings) -> BatchSink:
    registry = settings.registry()
    rules = load_rules(settings.rules_path, registry)
    engine = AlertEngine(rules, registry, watermark_ms=int(settings.scorer_watermark_s * 1000),
                         outlier_cooldown_ms=int(settings.scorer_outlier_cooldown_s * 1000),
                         eval_step_ms=int(settings.scorer_eval_step_s * 1000))
    ckpt = settings.checkpoint_dir
    if not (ckpt / "spark" / "offsets").exists():
        # A fresh Spark checkpoint starts at batch 0 again: engine state and unfinished batches of an older
        # checkpoint would not match.
        EngineLog.reset(ckpt / "engine")
        SinkWal.reset(sink_wal_dir(settings))
    engine_log = EngineLog(ckpt / "engine", snapshot_every=settings.scorer_snapshot_every)
    engine_log.recover(engine)
    log.info("engine recovered at batch %d (%d stations, %d alert slots); rules: %s", engine.state.version,
             len(engine.state.station_ids), len(engine.state.slots), ", ".join(r.id for r in rules.rules))
    return BatchSink(settings, registry, engine, engine_log, open_store(settings))


def sink_wal_dir(settings: ScorerSettings) -> Path:
    return settings.checkpoint_dir / "sink-wal"


def foreach_batch(settings: ScorerSettings,
                  sink: BatchSink) -> tuple[Callable[[Any, int], None], OverlappedSink | None]:
    """The query's ``foreachBatch`` function and, when the sink runs overlapped (the default), its
    :class:`OverlappedSink` after it finished the batches a previous run left unfinished."""
    if not settings.scorer_sink_overlap:
        return sink, None
    overlapped = OverlappedSink(sink.run, SinkWal(sink_wal_dir(settings)))
    if done := overlapped.recover():
        log.info("finished %d batch(es) left in the sink's write-ahead files", done)
    return overlapped, overlapped


class ConsumerLag:
    """The lag gauge (``citysense_scorer_consumer_lag_messages``): messages on the readings topic not processed yet,
    = sum over partitions of (end offset now) - (offset where the last finished micro-batch ended).

    Query progress alone cannot give this: ``lastProgress`` is written when a micro-batch finishes, so its
    ``latestOffset`` is as old as the running batch, and a long batch (a backlog after an outage) read as no lag
    growth at all. Here the ends come from an :class:`~citysense_scorer.kafka_source.EndOffsetProbe` in this process
    (``ends``, current to a fraction of a second) and only the processed side from where the last batch the store
    holds ended (:func:`follow_processed`: Spark's progress, or the overlapped sink's last finished batch), seeded
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
    and counting the batch still being written as processed made the gauge read a whole batch low."""
    if overlapped is None:
        lag.update(progress)
    elif (done := overlapped.last_finished) is not None:
        lag.processed_to(batch_offsets(checkpoint, done, topic))


def start_lag(settings: ScorerSettings) -> tuple[ConsumerLag, Any]:
    """The lag gauge's state and the end-offset probe it reads (close it on shutdown)."""
    from citysense_scorer.kafka_source import EndOffsetProbe, check_resumable, end_offsets, low_offsets, partition_ids

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


def run(settings: ScorerSettings) -> int:
    from citysense_scorer.spark import build_session

    wait_for_broker(settings.bootstrap, timeout=60, extra=settings.kafka_options)
    ensure_topics(settings.bootstrap, default_topics(settings), extra=settings.kafka_options)
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    duration_ms("1s")  # rules module import check
    m.serve(settings.scorer_metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current micro-batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sink = build_sink(settings)
    batch_fn, overlapped = foreach_batch(settings, sink)
    lag, probe = start_lag(settings)
    spark = build_session(settings.scorer_spark_master, shuffle_partitions=settings.scorer_shuffle_partitions,
                          driver_memory=settings.scorer_driver_memory)
    query = start_query(spark, settings, batch_fn)
    log.info("scorer running: %s -> store, %s, %s; checkpoint %s; metrics :%d", settings.readings_topic,
             settings.alerts_topic, settings.dlq_topic, settings.checkpoint_dir, settings.scorer_metrics_port)
    failure = None
    try:
        while not stop.is_set() and query.isActive:
            query.awaitTermination(1)
            if overlapped is not None and (error := overlapped.failure()) is not None:
                # Spark would only hear of it at the next micro-batch, which an idle stream may never start.
                failure = error
                break
            progress = query.lastProgress
            follow_processed(lag, progress, overlapped, settings.checkpoint_dir / "spark", settings.readings_topic)
            for phase, ms in ((progress or {}).get("durationMs") or {}).items():
                m.TRIGGER_PHASE.labels(phase).set(ms / 1000)
            messages = lag.value()
            if messages is not None:
                m.LAG.set(messages)
        if failure is None and not stop.is_set():
            failure = query.exception()
    except Exception:
        # SIGTERM to the process group also reaches the JVM, whose shutdown hook stops Spark under us; that is a
        # requested stop, and safe: every batch effect is idempotent and unfinished batches re-run from the checkpoint.
        if not stop.is_set():
            raise
    finally:
        # The batch in the sink finishes before the store closes (or stays in its write-ahead file after 60 s).
        drain = (lambda: overlapped.close(60)) if overlapped is not None else (lambda: None)
        for step in (query.stop, drain, lambda: sink.producer.flush(30), sink.store.close, spark.stop, probe.close):
            with contextlib.suppress(Exception):
                step()
    if failure is not None:
        log.error("streaming query failed: %s", failure)
        return 1
    log.info("scorer stopped")
    return 0
