"""SparkSession for the scorer: small local footprint, Arrow transfers, the Kafka Python data source registered."""

from __future__ import annotations

import os
import sys

from citysense_common.java import ensure_java
from pyspark.sql import SparkSession

from citysense_scorer.kafka_source import KafkaDataSource


def build_session(master: str, *, shuffle_partitions: int = 4, app_name: str = "citysense-scorer") -> SparkSession:
    ensure_java()
    # Workers must run the same interpreter as the driver (the venv with confluent-kafka and pyarrow).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", "1g")
        # Streaming: keep the offset/commit logs short; the job never needs old batches.
        .config("spark.sql.streaming.minBatchesToRetain", "20")
        .config("spark.sql.adaptive.enabled", "false")
        # A hostile message must become a dead letter, never a failed task: non-ANSI mode turns overflowing casts
        # and bad indexes into NULLs, which the validation expressions then classify.
        .config("spark.sql.ansi.enabled", "false")
        # The validation plan is a stack of projections over one parsed VARIANT; collapsing them inlines every
        # intermediate expression into every use and makes planning take seconds per micro-batch.
        .config("spark.sql.optimizer.excludedRules", "org.apache.spark.sql.catalyst.optimizer.CollapseProject")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    session.dataSource.register(KafkaDataSource)
    return session
