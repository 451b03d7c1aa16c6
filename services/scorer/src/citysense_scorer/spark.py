"""SparkSession for the scorer: small local footprint, Arrow transfers, the Kafka Python data source registered."""

from __future__ import annotations

import os
import sys

from citysense_common.java import ensure_java
from pyspark.sql import SparkSession

from citysense_scorer.kafka_source import KafkaDataSource

# Checkpoint writes without a process per file. Without Hadoop's native library (not on PyPI) the local file system
# runs `chmod` for every file it creates (and its .crc twin) and FileContext's rename runs `readlink`; the health
# operator's RocksDB state store uploads a snapshot per partition per micro-batch, and the scorer forked ~10
# processes a second from a 1 GiB JVM (a third of the machine's CPU in system time at 1,000 readings/s). Hence:
# the FileSystem-based checkpoint manager (plain rename, atomic on a local disk; no readlink) and RocksDB changelog
# checkpointing (a small changelog per batch, snapshots in the background). (The raw local file system would also
# drop the .crc files, but RocksDB's file manager insists on the checksummed one.)
FS_CHECKPOINT_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"


def build_session(master: str, *, shuffle_partitions: int, app_name: str = "citysense-scorer") -> SparkSession:
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
        # Validation happens in Python before rows reach Spark (decode.py); non-ANSI mode keeps any SQL over the
        # decoded rows from failing a task on an odd value.
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.sql.streaming.checkpointFileManagerClass", FS_CHECKPOINT_MANAGER)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    session.dataSource.register(KafkaDataSource)
    return session
