"""``citysense-scorer stream``: build the streaming query and run it until SIGTERM/SIGINT.

Settings, registry and rules come from the entry point (:mod:`citysense_scorer.cli`), built once.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citysense_common.kafka import default_topics, ensure_topics, wait_for_broker
from citysense_common.registry import Registry
from citysense_common.store.factory import open_store

from citysense_scorer import metrics as m
from citysense_scorer.alerts.engine import AlertEngine
from citysense_scorer.alerts.engine_log import EngineLog
from citysense_scorer.alerts.realtime import query as realtime
from citysense_scorer.alerts.realtime.jar import scorer_jars
from citysense_scorer.alerts.realtime.spec import RulePlan, plan
from citysense_scorer.alerts.rules import RuleSet
from citysense_scorer.health.bucket import HealthContext
from citysense_scorer.health.spark import attach_health
from citysense_scorer.job.lag import follow_processed, start_lag
from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink.micro_batch import BatchSink
from citysense_scorer.sink.overlap import OverlappedSink, SinkWal
from citysense_scorer.source.frame import source_frame
from citysense_scorer.source.offsets import partition_ids

log = logging.getLogger(__name__)
# The real-time query restarts in place this often within the window before the scorer gives up (and its supervisor
# restarts the whole process).
REALTIME_RESTARTS, REALTIME_RESTART_WINDOW_S = 3, 600.0


# The micro-batch's trigger when CITYSENSE_SCORER_TRIGGER_MS is unset. A micro-batch costs about the same at rest
# whatever it holds (planning, the health operator, the sink), so the batch rate sets the scorer's idle cost. With the
# real-time path carrying the short-window alerts, the micro-batch (readings to the store, long windows, station
# health, forecasts: all on a scale of minutes) starts every 5 s; without it, the micro-batch carries every alert.
# Under load a batch starts as soon as the one before ends, whatever the interval.
TRIGGER_MS_WITH_REALTIME, TRIGGER_MS_WITHOUT_REALTIME = 5000, 500


def trigger_ms(settings: ScorerSettings, realtime_rules: bool) -> int:
    if settings.scorer_trigger_ms is not None:
        return settings.scorer_trigger_ms
    return TRIGGER_MS_WITH_REALTIME if realtime_rules else TRIGGER_MS_WITHOUT_REALTIME


def start_query(spark: Any, settings: ScorerSettings, registry: Registry, rules: RuleSet,
                sink: Callable[[Any, int], None], trigger: int) -> Any:
    scored = source_frame(spark, settings, registry)
    if settings.health_enabled:
        # sensor faults, offline timers, baselines, forecasts (one stateful operator keyed by a bucket of stations)
        scored = attach_health(scored, HealthContext.build(registry, settings.profile, settings, rules))
    writer = (scored.writeStream.queryName("citysense-scorer").foreachBatch(sink)
              .option("checkpointLocation", str(settings.checkpoint_dir / "spark")))
    if trigger:
        writer = writer.trigger(processingTime=f"{trigger} milliseconds")
    return writer.start()


def build_sink(settings: ScorerSettings, registry: Registry, rules: RuleSet) -> BatchSink:
    """The micro-batch sink, whose engine evaluates ``rules`` (the rules the real-time path does not run)."""
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


class RestartBudget:
    """At most ``limit`` restarts within any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self.times: list[float] = []

    def allow(self, now: float) -> bool:
        self.times = [t for t in self.times if now - t < self.window_s]
        if len(self.times) >= self.limit:
            return False
        self.times.append(now)
        return True


def start_realtime(spark: Any, settings: ScorerSettings, registry: Registry, rules: RulePlan) -> Any | None:
    if not rules.realtime.rules:
        return None
    return realtime.start(spark, rules.realtime, registry, realtime.RealtimeSettings(
        bootstrap=settings.bootstrap, readings_topic=settings.readings_topic, alerts_topic=settings.alerts_topic,
        kafka_options=settings.kafka_options, checkpoint_dir=settings.checkpoint_dir / "realtime",
        checkpoint_interval=settings.scorer_realtime_checkpoint_interval,
        watermark_ms=int(settings.scorer_watermark_s * 1000), future_tolerance_s=settings.scorer_future_tolerance_s))


def spark_master(settings: ScorerSettings, realtime_slots: int) -> str:
    """Real-Time Mode runs every task of its query at once, for as long as a checkpoint interval, and refuses to start
    a batch unless all of them find a free slot. Locally each gets a slot beside the micro-batch query's, twice over:
    when one real-time batch ends, the next starts while the last tasks of the old one may still hold theirs. (Idle
    slots are only threads.)"""
    cores = settings.local_cores
    if not realtime_slots or cores is None:
        return settings.scorer_spark_master
    return f"local[{cores + 2 * realtime_slots}]"


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


def run(settings: ScorerSettings, registry: Registry, rules: RuleSet) -> int:
    from citysense_scorer.job.session import build_session

    wait_for_broker(settings.bootstrap, timeout=60, extra=settings.kafka_options)
    ensure_topics(settings.bootstrap, default_topics(settings), extra=settings.kafka_options)
    settings.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    m.serve(settings.scorer_metrics_port)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current micro-batch", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    paths = plan(rules, enabled=settings.scorer_realtime, max_window=settings.scorer_realtime_max_window)
    sink = build_sink(settings, registry, paths.micro_batch)
    batch_fn, overlapped = foreach_batch(settings, sink)
    lag, probe = start_lag(settings)
    kafka = {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}
    slots = len(partition_ids(kafka, settings.readings_topic)) + settings.scorer_shuffle_partitions \
        if paths.realtime.rules else 0
    spark = build_session(spark_master(settings, slots), shuffle_partitions=settings.scorer_shuffle_partitions,
                          driver_memory=settings.scorer_driver_memory, jars=scorer_jars(progress=log.info),
                          shuffle_flush_ms=settings.scorer_realtime_shuffle_flush_ms)
    query = start_query(spark, settings, registry, rules, batch_fn, trigger_ms(settings, bool(paths.realtime.rules)))
    fast = start_realtime(spark, settings, registry, paths)
    log.info("scorer running: %s -> store, %s, %s; checkpoint %s; metrics :%d", settings.readings_topic,
             settings.alerts_topic, settings.dlq_topic, settings.checkpoint_dir, settings.scorer_metrics_port)
    log.info("real-time rules: %s", ", ".join(r.id for r in paths.realtime.rules) or "none")
    failure = None
    restarts = RestartBudget(REALTIME_RESTARTS, REALTIME_RESTART_WINDOW_S)
    try:
        while not stop.is_set() and query.isActive:
            query.awaitTermination(1)
            if fast is not None and not fast.isActive:
                # It resumes from its checkpoint; only a query that keeps failing stops the scorer.
                if not restarts.allow(time.monotonic()):
                    failure = fast.exception() or "the real-time alert query stopped"
                    break
                log.error("real-time alert query stopped (%s); restarting it from its checkpoint",
                          fast.exception() or "no error")
                m.REALTIME_RESTARTS.inc()
                fast = start_realtime(spark, settings, registry, paths)
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
        stop_fast = fast.stop if fast is not None else (lambda: None)
        for step in (stop_fast, query.stop, drain, lambda: sink.producer.flush(30), sink.store.close, spark.stop,
                     probe.close):
            with contextlib.suppress(Exception):
                step()
    if failure is not None:
        log.error("streaming query failed: %s", failure)
        return 1
    log.info("scorer stopped")
    return 0
