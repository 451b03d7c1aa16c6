"""``citysense-scorer stream``: build the streaming query and run it until SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from citysense_common.kafka import default_topics, ensure_topics, wait_for_broker
from citysense_common.store.factory import open_store

from citysense_scorer import metrics as m
from citysense_scorer.engine import AlertEngine
from citysense_scorer.engine_log import EngineLog
from citysense_scorer.rules import duration_ms, load_rules
from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink import BatchSink

log = logging.getLogger(__name__)


def source_frame(spark: Any, settings: ScorerSettings) -> Any:
    """Raw Kafka rows (key, value, topic, partition, offset, timestamp_ms) from the configured source."""
    if settings.scorer_source == "kafka":
        reader = (spark.readStream.format("kafka")
                  .option("kafka.bootstrap.servers", settings.bootstrap)
                  .option("subscribe", settings.readings_topic)
                  .option("startingOffsets", "earliest")
                  .option("failOnDataLoss", "false"))
        for name, value in settings.kafka_options.items():
            reader = reader.option(f"kafka.{name}", value)
        if settings.scorer_max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", settings.scorer_max_offsets_per_trigger)
        return reader.load().selectExpr("key", "value", "topic", "partition", "offset",
                                        "unix_millis(timestamp) AS timestamp_ms")
    import json

    return (spark.readStream.format("citysense_kafka")
            .option("bootstrap", settings.bootstrap)
            .option("topic", settings.readings_topic)
            .option("kafka_options", json.dumps(settings.kafka_options))
            .option("max_offsets_per_trigger", str(settings.scorer_max_offsets_per_trigger))
            .load())


def start_query(spark: Any, settings: ScorerSettings, sink: BatchSink) -> Any:
    from citysense_scorer.validation import parse_and_validate, with_scores

    registry = settings.registry()
    scored = with_scores(
        parse_and_validate(source_frame(spark, settings), registry,
                           future_tolerance_s=settings.scorer_future_tolerance_s),
        registry, settings.profile, settings.scorer_z_bound,
    )
    from citysense_scorer.health_wiring import health_stream

    scored = health_stream(scored, settings, registry)  # sensor faults, offline timers, baselines, forecasts
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
        # A fresh Spark checkpoint starts at batch 0 again: engine state of an older checkpoint would not match.
        EngineLog.reset(ckpt / "engine")
    engine_log = EngineLog(ckpt / "engine", snapshot_every=settings.scorer_snapshot_every)
    engine_log.recover(engine)
    log.info("engine recovered at batch %d (%d series, %d alert slots); rules: %s", engine.state.version,
             len(engine.state.series), len(engine.state.slots), ", ".join(r.id for r in rules.rules))
    return BatchSink(settings, registry, engine, engine_log, open_store(settings))


def _lag(query: Any) -> int | None:
    progress = query.lastProgress
    if not progress or not progress.get("sources"):
        return None
    source = progress["sources"][0]
    latest, end = source.get("latestOffset"), source.get("endOffset")
    if not isinstance(latest, dict) or not isinstance(end, dict):
        return None
    return sum(max(0, int(latest[p]) - int(end.get(p, 0))) for p in latest)


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
    spark = build_session(settings.scorer_spark_master, shuffle_partitions=settings.scorer_shuffle_partitions)
    query = start_query(spark, settings, sink)
    log.info("scorer running: %s -> store, %s, %s; checkpoint %s; metrics :%d", settings.readings_topic,
             settings.alerts_topic, settings.dlq_topic, settings.checkpoint_dir, settings.scorer_metrics_port)
    failure = None
    try:
        while not stop.is_set() and query.isActive:
            query.awaitTermination(1)
            lag = _lag(query)
            if lag is not None:
                m.LAG.set(lag)
        failure = None if stop.is_set() else query.exception()
    except Exception:
        # SIGTERM to the process group also reaches the JVM, whose shutdown hook stops Spark under us; that is a
        # requested stop, and safe: every batch effect is idempotent and unfinished batches re-run from the checkpoint.
        if not stop.is_set():
            raise
    finally:
        for step in (query.stop, lambda: sink.producer.flush(30), sink.store.close, spark.stop):
            with contextlib.suppress(Exception):
                step()
    if failure is not None:
        log.error("streaming query failed: %s", failure)
        return 1
    log.info("scorer stopped")
    return 0
