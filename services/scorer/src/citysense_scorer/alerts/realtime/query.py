"""Start the real-time alert query: Spark's Kafka source -> checks in the JVM -> JVM lifecycle -> alerts topic."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from citysense_common.registry import Registry

from citysense_scorer.alerts.realtime.spec import build_spec
from citysense_scorer.alerts.rules import RuleSet
from citysense_scorer.source.columns import reading_columns

STATE_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"


@dataclass(frozen=True)
class RealtimeSettings:
    """What the query needs, built by the entry point from the scorer's settings."""

    bootstrap: str
    readings_topic: str
    alerts_topic: str
    kafka_options: dict[str, str]
    checkpoint_dir: Path
    checkpoint_interval: str  # Real-Time Mode's batch length: how often offsets and state are checkpointed
    watermark_ms: int
    future_tolerance_s: float
    starting_offsets: str = "earliest"
    trigger: str = "realtime"  # realtime | availableNow (tests and replays: the same query as micro-batches)


def start(spark: Any, rules: RuleSet, registry: Registry, settings: RealtimeSettings) -> Any:
    """The started streaming query (``pyspark.sql.streaming.StreamingQuery``)."""
    from pyspark.sql import DataFrame

    spec = build_spec(rules, registry, watermark_ms=settings.watermark_ms)
    # transformWithState needs RocksDB. The setting is session-wide but read when a query starts: the micro-batch
    # query starts first, so the provider its checkpoint records (which tells health on from off,
    # health/checkpoint.py) stays its own.
    spark.conf.set("spark.sql.streaming.stateStore.providerClass", STATE_PROVIDER)
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.bootstrap)
              .option("subscribe", settings.readings_topic)
              .option("startingOffsets", settings.starting_offsets)
              .option("failOnDataLoss", "false"))
    for name, value in settings.kafka_options.items():
        reader = reader.option(f"kafka.{name}", value)
    readings = reading_columns(reader.load(), registry, spec["metrics"],
                               future_tolerance_s=settings.future_tolerance_s)
    jvm = spark.sparkContext._jvm
    events = DataFrame(jvm.org.citysense.scorer.realtime.RealtimeAlerts.apply(readings._jdf, json.dumps(spec)),
                       spark)
    writer = (events.writeStream.format("kafka")
              .queryName("citysense-realtime-alerts")
              .option("kafka.bootstrap.servers", settings.bootstrap)
              .option("topic", settings.alerts_topic)
              .option("checkpointLocation", str(settings.checkpoint_dir))
              .outputMode("update"))
    for name, value in settings.kafka_options.items():
        writer = writer.option(f"kafka.{name}", value)
    if settings.trigger == "realtime":
        writer = writer.trigger(realTime=settings.checkpoint_interval)
    else:
        writer = writer.trigger(availableNow=True)
    return writer.start()
