"""The streaming frame of decoded, validated readings: Spark's Kafka source, then the decoder in Python workers.

- Offsets live in the query's checkpoint (Spark's Kafka source; no consumer group, nothing committed to Kafka). A
  micro-batch reads at most ``scorer_max_offsets_per_trigger`` messages, spread over the partitions by backlog, and
  its offsets are in the checkpoint before it runs: batch boundaries depend only on offsets and the cap, so a batch
  re-run after a crash reads the same messages.
- Each message's ``timestamp`` and ``timestampType`` reach the decoder (``timestamp_ms``, ``timestamp_type``): the
  broker's clock judges what is in the future (see :mod:`citysense_scorer.source.decode`).
- Offsets that vanish fail the query (``failOnDataLoss``): a topic recreated under a running query stops it at its
  next micro-batch, and the restart refuses the checkpoint with the fix, before Spark starts
  (:func:`citysense_scorer.source.offsets.check_resumable`, from :func:`citysense_scorer.job.lag.start_lag`). The one
  exception: readings Kafka's retention deleted before the scorer read them are gone either way, and failing would
  stop every start; a run whose checkpoint resumes before a partition's first retained reading reads on from there
  and logs how many readings were lost.

Why the decoder in ``mapInArrow`` and not JSON parsing in the JVM (``from_json`` with the contract schema, valid rows
typed in the JVM, only rejected rows sent to the Python reference for their reason): measured on the scorer's stack,
the JVM path costs more CPU per reading. ``from_json`` plus the contract's checks as SQL expressions (key list,
patterns, per-metric ranges through maps) cost the JVM more than the decoder costs a Python worker, and the rejected
rows need a second branch over the same Kafka rows (a union of accepted and rejected), which reads and parses every
micro-batch twice. The decoder reads each message once and hands Spark typed Arrow columns.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
from citysense_common.registry import Registry

from citysense_scorer.settings import ScorerSettings
from citysense_scorer.source.offsets import committed_offsets, lost_to_retention

log = logging.getLogger(__name__)

# The Kafka source's columns the decoder reads; timestamp_type is Kafka's id (0 CreateTime, 1 LogAppendTime).
RAW_COLUMNS = ("key", "value", "topic", "partition", "offset", "unix_millis(timestamp) AS timestamp_ms",
               "timestampType AS timestamp_type")


def fail_on_data_loss(settings: ScorerSettings) -> bool:
    """False only when the checkpoint resumes before a partition's first retained reading (see the module
    docstring), with a warning that says how many readings were lost."""
    resume = committed_offsets(settings.checkpoint_dir / "spark", settings.readings_topic)
    if not resume:
        return True
    conf = {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}
    lost = lost_to_retention(conf, settings.readings_topic, resume)
    if lost:
        log.warning("Kafka's retention deleted %d reading(s) of %s before the scorer read them (per partition: %s); "
                    "scoring from the first retained one", sum(lost.values()), settings.readings_topic,
                    ", ".join(f"{p}: {n}" for p, n in sorted(lost.items())))
    return not lost


def kafka_rows(spark: Any, settings: ScorerSettings) -> Any:
    """The readings topic as Spark's Kafka source reads it, from the checkpoint's offsets (the first retained ones on
    a fresh checkpoint), at most ``scorer_max_offsets_per_trigger`` messages per micro-batch."""
    reader = (spark.readStream.format("kafka")
              .option("kafka.bootstrap.servers", settings.bootstrap)
              .option("subscribe", settings.readings_topic)
              .option("startingOffsets", "earliest")
              .option("failOnDataLoss", str(fail_on_data_loss(settings)).lower()))
    for name, value in settings.kafka_options.items():
        reader = reader.option(f"kafka.{name}", value)
    if settings.scorer_max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", settings.scorer_max_offsets_per_trigger)
    return reader.load()


def decode_tasks(settings: ScorerSettings) -> int:
    """How many tasks read and decode a micro-batch; 0 = one per readings partition (Spark's Kafka source).

    A task per partition is a Python worker per partition running at once whenever the executor has the slots, and
    the real-time query's slots are added to the micro-batch's (:func:`citysense_scorer.job.stream.spark_master`):
    twelve partitions on two cores would be twelve workers' memory for two cores' work. So a micro-batch is read by as
    many tasks as it has cores: ``scorer_decode_tasks``, else N of a ``local[N]`` master."""
    return settings.scorer_decode_tasks or settings.local_cores or 0


def decode_in_worker(registry_json: str, future_tolerance_s: float,
                     batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function: raw Kafka rows -> decoded rows, in a Python worker (one decoder per worker)."""
    from citysense_scorer.source.decode import decoder_for
    from citysense_scorer.worker_gc import freeze_once

    decoder = decoder_for(registry_json, future_tolerance_s)
    freeze_once()
    return decoder.decode_batches(batches)


def source_frame(spark: Any, settings: ScorerSettings, registry: Registry) -> Any:
    """Decoded, validated rows (see :mod:`citysense_scorer.source.decode`) of the readings topic."""
    from pyspark.sql.pandas.types import from_arrow_schema

    from citysense_scorer.source.decode import decoded_arrow_schema

    raw = kafka_rows(spark, settings).selectExpr(*RAW_COLUMNS)
    tasks = decode_tasks(settings)
    if tasks:
        raw = raw.coalesce(tasks)  # no shuffle: each task reads its partitions one after the other
    schema = from_arrow_schema(decoded_arrow_schema(registry))
    decode = partial(decode_in_worker, registry.model_dump_json(), settings.scorer_future_tolerance_s)
    return raw.mapInArrow(decode, schema)

