"""SparkSession for the scorer: small local footprint, Arrow transfers, extra jars (Spark's Kafka connector).

:func:`build_session` is process setup, called by the job's entry point (:func:`citysense_scorer.job.stream.run`)
before anything else starts: besides the session, it sets this process's environment for the JVM and the Python
workers it starts (which interpreter, how memory is handed back). Nothing else in the scorer writes the environment.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from citysense_common.jvm.java import ensure_java
from pyspark.sql import SparkSession

# Checkpoint writes without a process per file. Without Hadoop's native library (not on PyPI) the local file system
# runs `chmod` for every file it creates (and its .crc twin) and FileContext's rename runs `readlink`, each a process
# forked from the JVM, and the health operator's RocksDB state store uploads a snapshot per partition per
# micro-batch. Hence the FileSystem-based checkpoint manager (plain rename, atomic on a local disk; no readlink) and
# RocksDB changelog checkpointing (a small changelog per batch, snapshots in the background). (The raw local file
# system would also drop the .crc files, but RocksDB's file manager insists on the checksummed one.)
FS_CHECKPOINT_MANAGER = "org.apache.spark.sql.execution.streaming.checkpointing.FileSystemBasedCheckpointFileManager"

# Memory handed back after each micro-batch. A backlog batch (up to scorer_max_offsets_per_trigger readings) briefly
# needs far more memory in the driver, the JVM and every Python worker than a steady one, and by default all three
# keep the peak: glibc raises its mmap threshold after large frees (so later large buffers come from a heap it rarely
# trims), pyarrow's mimalloc pool keeps freed pages, and G1 keeps the heap it grew to. The chart sets the same on the
# scorer's pods (tests/charts check the two agree).
LEAN_MEMORY_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "131072",  # fixed: buffers over 128 KiB are mmap'd and unmapped when freed
    "MALLOC_TRIM_THRESHOLD_": "131072",  # trim the heap's free top past 128 KiB
    "ARROW_DEFAULT_MEMORY_POOL": "system",  # pyarrow allocates through glibc, i.e. under the two settings above
}
# The health operator's state crosses the JVM several times per micro-batch, one document per bucket: pickled from
# Python, as a string, into RocksDB. With thousands of stations a document is larger than half of G1's default 1 MiB
# region, so every copy is a humongous object, allocated straight in the old generation, which then fills quickly and
# keeps concurrent marking running. 8 MiB regions keep objects up to 4 MiB young. The young generation is capped at a
# quarter of the heap: with collections rare, G1 would otherwise grow it, and the resident memory with it.
JVM_GC_OPTIONS = "-XX:G1HeapRegionSize=8m -XX:+UnlockExperimentalVMOptions -XX:G1MaxNewSizePercent=25"
JVM_MEMORY_OPTIONS = "-XX:MaxHeapFreeRatio=20 -XX:MinHeapFreeRatio=5 -XX:G1PeriodicGCInterval=5000 " + JVM_GC_OPTIONS
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def lean_memory() -> None:
    """Apply :data:`LEAN_MEMORY_ENV` to this process and, through the environment, to the JVM started next and its
    Python workers (settings already in the environment win)."""
    for name, value in LEAN_MEMORY_ENV.items():
        os.environ.setdefault(name, value)
    # This process read its MALLOC_* variables when it started; set the same through mallopt (glibc only).
    libc_name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(libc_name) if libc_name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, int(os.environ["MALLOC_MMAP_THRESHOLD_"]))
        libc.mallopt(_M_TRIM_THRESHOLD, int(os.environ["MALLOC_TRIM_THRESHOLD_"]))
    if os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "system":
        import pyarrow as pa

        pa.set_memory_pool(pa.system_memory_pool())


# A real-time query's pipelined shuffle (readings -> the lifecycle, keyed by station) holds a partly filled network
# buffer up to this long before it sends it on; Spark's default, 50 ms, would be most of an alert's way to Kafka.
# Each writer's flush timer wakes this often, so a few milliseconds cost next to nothing at rest.
SHUFFLE_FLUSH_CONF = "spark.shuffle.streaming.networkBufferMaxWaitTimeMs"


def build_session(master: str, *, shuffle_partitions: int, driver_memory: str,
                  app_name: str = "citysense-scorer", jars: Sequence[Path] = (),
                  shuffle_flush_ms: int = 5) -> SparkSession:
    ensure_java()
    # Workers must run the same interpreter as the driver (the venv with confluent-kafka and pyarrow).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    lean_memory()
    session = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # a progress bar redrawn into the log file, per stage
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .config("spark.driver.memory", driver_memory)
        .config(SHUFFLE_FLUSH_CONF, str(shuffle_flush_ms))
        .config("spark.jars", ",".join(str(jar) for jar in jars))
        .config("spark.driver.extraJavaOptions", JVM_MEMORY_OPTIONS)  # local mode: the driver JVM starts here
        # Streaming: keep the offset/commit logs short; the job never needs old batches.
        .config("spark.sql.streaming.minBatchesToRetain", "20")
        .config("spark.sql.adaptive.enabled", "false")
        # Readings are validated before any other SQL sees them (source/decode.py in the micro-batch query, the
        # try_* expressions of source/columns.py in the real-time one); non-ANSI mode keeps any SQL over the
        # decoded rows from failing a task on an odd value.
        .config("spark.sql.ansi.enabled", "false")
        .config("spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled", "true")
        .config("spark.sql.streaming.checkpointFileManagerClass", FS_CHECKPOINT_MANAGER)
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("WARN")
    quiet_jvm_loggers(session)
    return session


# Spark's "Current batch is falling behind. The trigger interval is 500 milliseconds, but spent 1489 milliseconds"
# comes for every micro-batch that outlasts the trigger, which under load is every one: a WARN line a second in the
# scorer's log. How far behind the job is shows in its metrics (batch duration, consumer lag) instead.
QUIET_JVM_LOGGERS = ("org.apache.spark.sql.execution.streaming.runtime.ProcessingTimeExecutor",)


def quiet_jvm_loggers(session: SparkSession) -> None:
    jvm = session.sparkContext._jvm
    assert jvm is not None
    for name in QUIET_JVM_LOGGERS:
        jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(name, jvm.org.apache.logging.log4j.Level.ERROR)
