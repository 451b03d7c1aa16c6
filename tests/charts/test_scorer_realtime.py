"""The real-time alert path in the chart: its settings reach the scorer, and the stream's executors get a task slot
for every task of the Real-Time Mode query (one per readings partition and per state partition), twice over, without
asking Kubernetes for more CPU."""

from __future__ import annotations

import math

import pytest
from chart_helpers import env_of, find, render

STREAM, BATCH = "citysense-scorer", "citysense-scorer-batch"


def slots(spec: dict) -> int:
    return spec["executor"]["instances"] * spec["executor"]["cores"]


def test_the_stream_has_a_slot_for_every_real_time_task_and_requests_only_its_cores(default_docs) -> None:  # noqa: ANN001
    spec = find(default_docs, "SparkApplication", STREAM)["spec"]
    env = env_of(spec["driver"])
    assert (env["CITYSENSE_SCORER_REALTIME"], env["CITYSENSE_SCORER_REALTIME_MAX_WINDOW"],
            env["CITYSENSE_SCORER_REALTIME_CHECKPOINT_INTERVAL"]) == ("true", "10m", "1 minute")
    state = int(env["CITYSENSE_SCORER_SHUFFLE_PARTITIONS"])
    realtime = 12 + state  # readings partitions (values.yaml) + state partitions
    assert slots(spec) >= 2 * realtime + state  # twice (batch changes), and the micro-batch keeps one per core
    assert spec["sparkConf"]["spark.kubernetes.executor.request.cores"] == "1"  # executor.cores of values.yaml
    batch = find(default_docs, "ScheduledSparkApplication", BATCH)["spec"]["template"]
    assert batch["executor"]["cores"] == 1  # the daily batch runs no real-time query


@pytest.mark.parametrize(("instances", "cores", "partitions"), [(1, 1, 6), (3, 2, 12), (4, 1, 24)])
def test_slots_follow_partitions_and_executors(instances: int, cores: int, partitions: int) -> None:
    docs = render(values={"scorer.executor": {"instances": instances, "cores": cores},
                          "kafka.topics.readings.partitions": partitions})
    spec = find(docs, "SparkApplication", STREAM)["spec"]
    state = instances * cores
    assert spec["executor"]["cores"] == cores + math.ceil(2 * (partitions + state) / instances)
    assert spec["sparkConf"]["spark.kubernetes.executor.request.cores"] == str(cores)
    # the micro-batch is decoded by one task per requested core, not one per partition or per slot
    assert env_of(spec["driver"])["CITYSENSE_SCORER_DECODE_TASKS"] == str(state)


def test_without_the_real_time_path_no_extra_slots() -> None:
    docs = render(values={"scorer.realtime": {"enabled": False, "maxWindow": "10m", "checkpointInterval": "1 minute"}})
    spec = find(docs, "SparkApplication", STREAM)["spec"]
    assert spec["executor"]["cores"] == 1
    assert env_of(spec["driver"])["CITYSENSE_SCORER_REALTIME"] == "false"


def test_the_rendered_values_parse_as_scorer_settings(default_docs, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from citysense_scorer.settings import ScorerSettings

    env = env_of(find(default_docs, "SparkApplication", STREAM)["spec"]["driver"])
    for name, value in env.items():
        if name.startswith("CITYSENSE_SCORER_REALTIME"):
            monkeypatch.setenv(name, value)
    settings = ScorerSettings()
    assert settings.scorer_realtime is True and settings.scorer_realtime_checkpoint_interval == "1 minute"
