"""Issue 8 in the chart: the stream runs with station health on, and a daily job runs the batch for yesterday.

Static checks over the rendered YAML, plus the rendered batch arguments and health environment fed to the real
scorer code (so the chart cannot pass arguments the CLI rejects, or values the settings cannot parse).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chart_helpers import CHART, env_of, find, render, template_raw

STREAM, BATCH = "citysense-scorer", "citysense-scorer-batch"


def test_stream_health_setting_reaches_driver_and_executors(default_docs) -> None:  # noqa: ANN001
    spec = find(default_docs, "SparkApplication", STREAM)["spec"]
    for role in ("driver", "executor"):  # the health operator runs on the executors, the sink on the driver
        env = env_of(spec[role])
        assert env["CITYSENSE_HEALTH_ENABLED"] == "true"  # on by default (see values.yaml)
        assert env["CITYSENSE_HEALTH_BUCKETS"] == "8"
        assert env["CITYSENSE_SCORER_SHUFFLE_PARTITIONS"] == "2"  # 2 executors x 1 core
        assert env["CITYSENSE_OFFLINE_AFTER_S"] == "60"
        assert "CITYSENSE_OFFLINE_GROUPS" not in env  # no groups: the default applies to every station


def test_health_values_reach_the_scorer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from citysense_common.settings import load_settings
    from citysense_scorer.health.settings import HealthSettings

    docs = render(values={"scorer.health": {"enabled": False, "offlineAfterSeconds": 90, "buckets": 16,
                                            "offlineGroups": {"lora-*": 900}}})
    env = env_of(find(docs, "SparkApplication", STREAM)["spec"]["driver"])
    for name, value in env.items():
        if name.startswith("CITYSENSE_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    health = load_settings(HealthSettings)
    assert (health.health_enabled, health.offline_after_s, health.offline_groups) == (False, 90.0, {"lora-*": 900.0})
    assert health.health_buckets == 16


def test_state_partitions_follow_the_executor_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from citysense_scorer.settings import scorer_settings

    docs = render(values={"scorer.executor": {"instances": 3, "cores": 2}})
    env = env_of(find(docs, "SparkApplication", STREAM)["spec"]["driver"])
    assert env["CITYSENSE_SCORER_SHUFFLE_PARTITIONS"] == "6"
    monkeypatch.setenv("CITYSENSE_SCORER_SHUFFLE_PARTITIONS", env["CITYSENSE_SCORER_SHUFFLE_PARTITIONS"])
    assert scorer_settings().scorer_shuffle_partitions == 6


def test_stream_pacing_reaches_the_scorer_settings(default_docs, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    from citysense_scorer.settings import scorer_settings

    default = env_of(find(default_docs, "SparkApplication", STREAM)["spec"]["driver"])
    assert "CITYSENSE_SCORER_TRIGGER_MS" not in default  # the scorer's default, which follows the real-time path
    docs = render(values={"scorer.stream": {"triggerMs": 0}})
    env = env_of(find(docs, "SparkApplication", STREAM)["spec"]["driver"])
    monkeypatch.setenv("CITYSENSE_SCORER_TRIGGER_MS", env["CITYSENSE_SCORER_TRIGGER_MS"])
    assert scorer_settings().scorer_trigger_ms == 0


@pytest.mark.parametrize(("values", "needle"), [
    ({"scorer.health.offlineAfterSeconds": 0}, "offlineAfterSeconds"),
    ({"scorer.health.enabled": "yes"}, "enabled"),
    ({"scorer.health.offlineGroups": {"lora-*": "slow"}}, "offlineGroups"),
    ({"scorer.health.offlineAfter": 60}, "additional properties"),
    ({"scorer.stream.triggerMs": -1}, "triggerMs"),
    ({"scorer.stream.triggerMs": "fast"}, "triggerMs"),
], ids=["zero-offline-after", "enabled-not-bool", "group-not-a-number", "typo", "negative-trigger", "trigger-not-int"])
def test_bad_health_values_are_rejected(values: dict, needle: str) -> None:
    result = template_raw(values=values)
    assert result.returncode != 0, f"helm accepted {values}"
    assert needle.lower() in result.stderr.lower(), result.stderr


def test_batch_job_runs_daily_for_yesterday(default_docs) -> None:  # noqa: ANN001
    scheduled = find(default_docs, "ScheduledSparkApplication", BATCH)
    spec = scheduled["spec"]
    minute, hour, day_of_month, month, day_of_week = spec["schedule"].split()
    assert (day_of_month, month, day_of_week) == ("*", "*", "*") and minute.isdigit() and hour.isdigit(), "daily"
    assert spec["concurrencyPolicy"] == "Forbid"  # a slow run is never overlapped by the next one
    template = spec["template"]
    assert template["arguments"] == ["batch", "--day", "yesterday"]
    stream = find(default_docs, "SparkApplication", STREAM)["spec"]
    assert template["mainApplicationFile"] == stream["mainApplicationFile"]
    assert template["image"] == stream["image"]
    assert template["restartPolicy"]["type"] == "OnFailure"
    driver_env = env_of(template["driver"])
    for name in ("CITYSENSE_STORE", "CITYSENSE_CASSANDRA_HOSTS", "CITYSENSE_CASSANDRA_KEYSPACE"):
        # the job reads readings from and writes aggregates to the store the API serves
        assert driver_env[name] == env_of(stream["driver"])[name]
    assert scheduled["metadata"]["labels"]["app.kubernetes.io/component"] == "scorer-batch"


def test_batch_job_can_be_turned_off() -> None:
    docs = render(values={"scorer.batch.enabled": False})
    assert not [d for d in docs if d["kind"] == "ScheduledSparkApplication"]


def test_rendered_batch_arguments_run_the_real_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The image's mainApplicationFile runs ``citysense_scorer.cli.main(arguments)``: run it with the chart's."""
    from citysense_scorer.cli import main

    from tests.scorer.yesterday_store import yesterday_store

    arguments = find(render(), "ScheduledSparkApplication", BATCH)["spec"]["template"]["arguments"]
    store, yesterday = yesterday_store(tmp_path / "db.sqlite", "st-chart", hours=3, base=30.0)
    try:
        monkeypatch.setenv("CITYSENSE_STORE", "sqlite")
        monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(store.path))
        assert main(list(arguments)) == 0
        out = json.loads(capsys.readouterr().out)
        if out["day"] != yesterday.strftime("%Y-%m-%d"):
            pytest.skip("ran across midnight UTC")
        assert out["aggregates"] == 1
        assert [a.day for a in store.read_daily_aggregates("st-chart")] == [yesterday.strftime("%Y-%m-%d")]
    finally:
        store.close()


def test_values_document_both() -> None:
    text = (CHART / "values.yaml").read_text(encoding="utf-8")
    assert "citysense-scorer batch --day yesterday" in text
    assert "health:" in text and "CITYSENSE_HEALTH_ENABLED" in text


def test_scorer_pods_give_memory_back_like_the_local_scorer(default_docs) -> None:  # noqa: ANN001
    """The chart repeats the memory settings of citysense_scorer.job.session (a pod's JVM starts before any scorer
    code runs); this keeps the two copies equal."""
    from citysense_scorer.job.session import JVM_MEMORY_OPTIONS, LEAN_MEMORY_ENV

    for kind, name in (("SparkApplication", STREAM), ("ScheduledSparkApplication", BATCH)):
        doc = find(default_docs, kind, name)["spec"]
        spec = doc.get("template", doc)
        for role in ("driver", "executor"):
            env = env_of(spec[role])
            assert {k: env.get(k) for k in LEAN_MEMORY_ENV} == LEAN_MEMORY_ENV, (name, role)
            assert spec["sparkConf"][f"spark.{role}.extraJavaOptions"] == JVM_MEMORY_OPTIONS
