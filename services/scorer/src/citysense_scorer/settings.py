"""Scorer settings (environment prefix ``CITYSENSE_``), built once by :func:`scorer_settings` in the entry point and
passed down."""

from __future__ import annotations

import re
from pathlib import Path

from citysense_common.paths import config_dir
from citysense_common.settings import load_settings
from citysense_common.store.settings import StoreSettings
from pydantic import Field, field_validator

from citysense_scorer.health.settings import HealthSettings


class ScorerSettings(StoreSettings, HealthSettings):
    """Common + store settings (the scorer writes the store) + station health's + the scorer's own
    (``CITYSENSE_SCORER_*``)."""

    scorer_spark_master: str = Field(
        default="local[2]", description="Spark master of the micro-batch query; locally, the real-time query's task "
        "slots (one per readings partition, one for its lifecycle) are added to local[N]")
    scorer_realtime: bool = Field(
        default=True, description="run the short-window threshold rules in a Real-Time Mode query that writes "
        "alert events to Kafka as readings arrive; false = every rule in the micro-batch engine")
    scorer_realtime_max_window: str = Field(
        default="10m", description="threshold rules over a measured metric with a window up to this long run on the "
        "real-time path; longer windows and derived metrics stay in the micro-batch engine")
    scorer_realtime_checkpoint_interval: str = Field(
        default="1 minute", description="how often the real-time query checkpoints its offsets and state (Spark's "
        "real-time trigger; at least 5 seconds). After a crash it replays at most this much, re-sending the same "
        "alert events with the same ids")
    scorer_decode_tasks: int = Field(
        default=0, ge=0, description="tasks that read and decode a micro-batch's readings (each a Python worker); "
        "0 = N of a local[N] master, else one per readings partition (cluster: the chart sets the executors' cores)")
    scorer_realtime_shuffle_flush_ms: int = Field(
        default=5, ge=1, description="longest a real-time query's shuffle holds a partly filled buffer before "
        "sending it on to the lifecycle (Spark's spark.shuffle.streaming.networkBufferMaxWaitTimeMs, default 50): "
        "part of every real-time alert's latency")
    scorer_shuffle_partitions: int = Field(
        default=1, ge=1, description="partitions of the health operator's state (fixed by a checkpoint once it "
        "exists). Locally 1: a Python worker reuses the buckets it wrote only if it gets their partition again, and "
        "PySpark hands each task any idle worker, so with several partitions a micro-batch often rebuilds buckets "
        "from their JSON. Cluster: one per executor core")
    scorer_driver_memory: str = Field(
        default="768m",
        description="heap of the local-mode Spark JVM (-Xmx): enough for full backlog batches of the default "
        "scorer_max_offsets_per_trigger; a larger heap only lets G1 grow into it (cluster pods: the chart's "
        "scorer.driver.memory)")
    scorer_trigger_ms: int | None = Field(
        default=None, ge=0, description="micro-batch trigger interval; 0 = back to back; unset = 5000 when the "
        "real-time path runs rules (it carries the short-window alerts), else 500")
    scorer_max_offsets_per_trigger: int = Field(default=200_000, ge=0, description="0 = unlimited")
    scorer_checkpoint_dir: Path | None = Field(default=None, description="default <data_dir>/checkpoints/scorer")
    scorer_z_bound: float = Field(default=3.72, gt=0, description="|z| above this is a statistical outlier")
    scorer_future_tolerance_s: float = Field(default=300, ge=0, description="readings further ahead are rejected")
    scorer_watermark_s: float = Field(default=300, ge=0,
                                      description="readings older than max event time - this are late")
    scorer_eval_step_s: float = Field(default=5.0, gt=0, description="rules are evaluated per station once per "
                                      "this much event time (a replay is evaluated as it happened)")
    scorer_outlier_cooldown_s: float = Field(default=600, ge=0, description="at most one outlier alert per station per")
    scorer_metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus port; 0 = disabled")
    scorer_sink_overlap: bool = Field(
        default=True, description="write micro-batch N to the store while Spark computes N+1 (N kept in a "
        "write-ahead file until done); false = Spark waits for the sink")
    scorer_snapshot_every: int = Field(default=50, ge=1, description="engine state snapshot every N batches")
    rules_file: Path | None = Field(default=None, description="threshold rules; default config/rules.yaml")

    @field_validator("scorer_driver_memory")
    @classmethod
    def _jvm_size(cls, value: str) -> str:
        if not re.fullmatch(r"[1-9][0-9]*[kmgKMG]", value):
            raise ValueError(f"{value!r} is not a JVM memory size; use a number and a unit, such as 768m or 2g")
        return value

    @property
    def local_cores(self) -> int | None:
        """N of a ``local[N]`` Spark master; None for any other master."""
        match = re.fullmatch(r"local\[(\d+)\]", self.scorer_spark_master)
        return int(match.group(1)) if match else None

    @property
    def checkpoint_dir(self) -> Path:
        return self.scorer_checkpoint_dir or self.data_dir / "checkpoints" / "scorer"

    @property
    def rules_path(self) -> Path:
        return self.rules_file or config_dir() / "rules.yaml"


def scorer_settings(**overrides: object) -> ScorerSettings:
    return load_settings(ScorerSettings, **overrides)
