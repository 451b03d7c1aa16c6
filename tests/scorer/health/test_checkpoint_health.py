"""A streaming checkpoint written with the other station-health setting is refused before Spark starts, with the fix.

Spark cannot add the health operator (transformWithStateInPandas, RocksDB state) to a checkpoint written without it,
nor drop it again; left to itself it fails inside the first micro-batch with an assertion about source counts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.contract import Reading
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_scorer.health.checkpoint import CheckpointMismatch, check_checkpoint
from citysense_scorer.health.spark import STATE_PROVIDER
from citysense_scorer.settings import scorer_settings

from tests.scorer.job.test_stream_e2e import produce, scorer_env, start_scorer, stored_count

HDFS = "org.apache.spark.sql.execution.streaming.state.HDFSBackedStateStoreProvider"


def offsets_entry(ckpt: Path, batch: int, provider: str, sources: int = 1) -> None:
    """An offset-log entry as Spark 4 writes it: version, metadata (with the confs it restores), a line per source."""
    meta = {"batchWatermarkMs": 0, "batchTimestampMs": 1_700_000_000_000,
            "conf": {"spark.sql.streaming.stateStore.providerClass": provider, "spark.sql.shuffle.partitions": "4"}}
    path = ckpt / "spark" / "offsets" / str(batch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(["v1", json.dumps(meta), *['{"0": 10}'] * sources]), encoding="utf-8")


def health_operator_metadata(ckpt: Path) -> None:
    path = ckpt / "spark" / "state" / "0" / "_metadata" / "v2" / "0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('v2\n{"operatorInfo":{"operatorId":0,"operatorName":"transformWithStateInPandasExec"}}\n',
                    encoding="utf-8")


def test_fresh_checkpoints_fit_either_setting(tmp_path: Path) -> None:
    for health in (True, False):
        check_checkpoint(tmp_path / "missing", health)
        (tmp_path / "empty" / "spark" / "offsets").mkdir(parents=True, exist_ok=True)
        check_checkpoint(tmp_path / "empty", health)


def test_health_on_refuses_a_checkpoint_written_without_it(tmp_path: Path) -> None:
    offsets_entry(tmp_path, 0, HDFS)
    with pytest.raises(CheckpointMismatch) as err:
        check_checkpoint(tmp_path, True)
    message = str(err.value)
    assert str(tmp_path) in message and "written without station health" in message
    assert "remove" in message and "CITYSENSE_HEALTH_ENABLED=false" in message  # both ways out are named
    check_checkpoint(tmp_path, False)  # the setting it was written with resumes it


def test_health_on_resumes_its_own_checkpoint_and_the_newest_entry_decides(tmp_path: Path) -> None:
    offsets_entry(tmp_path, 9, HDFS)
    offsets_entry(tmp_path, 10, STATE_PROVIDER, sources=2)  # 10 > 9 numerically (not as text)
    health_operator_metadata(tmp_path)
    check_checkpoint(tmp_path, True)


def test_health_off_refuses_a_checkpoint_written_with_it(tmp_path: Path) -> None:
    offsets_entry(tmp_path, 0, STATE_PROVIDER, sources=2)
    check_checkpoint(tmp_path, False)  # no operator metadata (e.g. RocksDB chosen for other reasons): not refused
    health_operator_metadata(tmp_path)
    with pytest.raises(CheckpointMismatch, match="CITYSENSE_HEALTH_ENABLED=true"):
        check_checkpoint(tmp_path, False)


def test_unreadable_entries_are_left_to_spark(tmp_path: Path) -> None:
    path = tmp_path / "spark" / "offsets" / "3"
    path.parent.mkdir(parents=True)
    path.write_text("v1\n{not json", encoding="utf-8")
    check_checkpoint(tmp_path, True)


def test_the_setting_comes_from_the_scorer_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    offsets_entry(tmp_path, 0, HDFS)
    monkeypatch.setenv("CITYSENSE_HEALTH_ENABLED", "false")
    check_checkpoint(tmp_path, scorer_settings().health_enabled)  # off, like the checkpoint
    monkeypatch.delenv("CITYSENSE_HEALTH_ENABLED", raising=False)
    with pytest.raises(CheckpointMismatch):
        check_checkpoint(tmp_path, scorer_settings().health_enabled)  # health is on by default


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_scorer_refuses_a_real_checkpoint_written_without_health(kafka_broker, unique_topics, tmp_path) -> None:  # noqa: ANN001
    """A checkpoint Spark wrote for a query without health; a scorer with health on exits at once, code 2."""
    bootstrap = kafka_broker.bootstrap
    ensure_topics(bootstrap, [TopicSpec(unique_topics[t], 1) for t in ("readings_topic", "alerts_topic", "dlq_topic")])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    produce(bootstrap, unique_topics["readings_topic"], [
        ("st-ck", Reading(schema_version=1, station_id="st-ck", ts=t0 + timedelta(seconds=i), seq=i,
                          metrics={"pm2_5": 6.0 + i % 3, "temperature": 11.0 + 0.1 * i}).to_json())
        for i in range(10)])
    env = {**scorer_env(tmp_path, bootstrap, unique_topics), "CITYSENSE_SCORER_MAX_OFFSETS_PER_TRIGGER": "0"}
    log = tmp_path / "scorer.log"
    db = tmp_path / "data" / "citysense.db"
    proc = start_scorer({**env, "CITYSENSE_HEALTH_ENABLED": "false"}, log)
    try:
        deadline = time.monotonic() + 400
        commits = tmp_path / "data" / "checkpoints" / "scorer" / "spark" / "commits"
        while not (stored_count(db) >= 10 and commits.is_dir() and any(commits.iterdir())):
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

    default_env = {**env, "CITYSENSE_HEALTH_ENABLED": "true"}
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "citysense_scorer.cli", "stream"], env=default_env,
                          capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout[-3000:] + done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "written without station health" in output and "CITYSENSE_HEALTH_ENABLED=false" in output, output[-3000:]
    assert "Traceback" not in output
    print(f"refused after {took:.1f}s")
    assert took < 60, "refused before Spark starts, not inside the first micro-batch"
