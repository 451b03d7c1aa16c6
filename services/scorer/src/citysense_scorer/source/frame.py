"""The streaming frame of decoded, validated readings from the configured Kafka source."""

from __future__ import annotations

import json
from typing import Any

from citysense_common.registry import Registry

from citysense_scorer.settings import ScorerSettings


def source_frame(spark: Any, settings: ScorerSettings, registry: Registry) -> Any:
    """Decoded, validated rows (see :mod:`citysense_scorer.source.decode`) from the configured source."""
    if settings.scorer_source == "kafka":
        from citysense_scorer.source.decode import Decoder

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
