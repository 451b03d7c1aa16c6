"""Replay of the CSV that the openSenseMap tutorial's notebook writes with pandas: hourly means per box and
phenomenon in a time column called ``day`` (``2019-01-01 00:00:00+00:00``), the box name beside the box id, and
pandas' default index as an unnamed first column (the header starts with a comma).

The fixture was made the way the notebook makes it: raw measurements every 5 minutes grouped by
``boxId, boxName, lat, lon, phenomenon, unit, day`` (``createdAt`` floored to the hour), ``mean()``,
``reset_index()``, ``to_csv(path)``. An hour in which Neukölln's PM2.5 sensor sent nothing is an empty value."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.registry import load_registry
from citysense_simulator.opensensemap_mapping import load_mapper
from citysense_simulator.replay import replay
from citysense_simulator.replay_csv import CsvSource, ReplayError
from citysense_simulator.runner import KafkaPublisher
from citysense_simulator.settings import load

from .kafka_readback import consume, readings

NOTEBOOK_EXPORT = Path(__file__).resolve().parent / "fixtures" / "opensensemap_tutorial_hourly.csv"
BOX_K, BOX_N = "5c3e1f2a9d8b7c001a2b3c4d", "5c3e1f2a9d8b7c001a2b3d10"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def mapper(registry):
    return load_mapper(registry)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_fixture_is_in_the_notebooks_shape() -> None:
    header = NOTEBOOK_EXPORT.read_text(encoding="utf-8").splitlines()[0]
    assert header == ",boxId,boxName,lat,lon,phenomenon,unit,day,value"


def test_notebook_export_replays_as_it_is(kafka_broker, unique_topics, registry, mapper) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 1)])
    settings = load(kafka_bootstrap=kafka_broker.bootstrap, **unique_topics)
    result = replay(NOTEBOOK_EXPORT, KafkaPublisher(settings), registry, mapper, speed=None)
    # 36 rows = 2 boxes x 3 phenomena x 6 hours; one empty hourly mean.
    assert result.stats.layout == "long"
    assert result.stats.time_column == "day"
    assert (result.stats.rows, result.stats.values, result.stats.empty, result.stats.unmapped) == (36, 35, 1, 0)
    assert result.readings == 12 and result.undelivered == 0 and result.failed == 0
    # The reading contract has no field for a station's name: the replay keeps it with its other station facts.
    assert result.station_names == {BOX_K: "Kreuzberg Oranienstr", BOX_N: "Neukölln, Sonnenallee"}
    got = readings(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], 1, 12))
    assert len(got) == 12
    assert [r.ts for r in got] == sorted(r.ts for r in got)
    by_key = {(r.station_id, r.ts): r for r in got}
    first = by_key[(BOX_K, at("2019-01-01T00:00:00"))]
    assert first.metrics == {"pm10": 39.22, "pm2_5": 30.72, "temperature": 1.45}
    assert (first.location.lat, first.location.lon) == (52.5009, 13.4188)
    assert set(by_key[(BOX_N, at("2019-01-01T03:00:00"))].metrics) == {"pm10", "temperature"}
    assert [r.seq for r in got if r.station_id == BOX_N] == list(range(6))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    return path


TWO_TIMES = (",boxId,phenomenon,unit,day,updated,value\n"
             "0,5b0000000000000000000001,PM10,µg/m³,2019-01-01 00:00:00+00:00,2019-01-03T10:00:00Z,12.5\n"
             "1,5b0000000000000000000001,PM10,µg/m³,2019-01-01 01:00:00+00:00,2019-01-03T10:00:00Z,13.5\n")


def test_time_column_option_names_the_column(tmp_path, registry, mapper) -> None:
    path = write(tmp_path, TWO_TIMES)
    with pytest.raises(ReplayError, match=r"row 1: no time column.*'day' and 'updated' both hold times; "
                                          r"name one with --time-column"):
        list(CsvSource(path, registry, mapper))
    source = CsvSource(path, registry, mapper, time_column="day")
    got = list(source)
    assert [(m.ts_ms, m.value) for m in got] == [(int(at("2019-01-01T00:00:00").timestamp() * 1000), 12.5),
                                                (int(at("2019-01-01T01:00:00").timestamp() * 1000), 13.5)]
    assert source.stats.time_column == "day"
    with pytest.raises(ReplayError, match=r"row 1: --time-column 'when' is not a column \(header: ,boxId,"):
        list(CsvSource(path, registry, mapper, time_column="when"))


def test_a_file_without_any_time_values_still_says_so(tmp_path, registry, mapper) -> None:
    with pytest.raises(ReplayError, match=r"row 1: no time column; expected one of ts, .* or a column of "
                                          r"ISO 8601 times"):
        list(CsvSource(write(tmp_path, ",station_id,pm10\n0,st-1,3\n"), registry, mapper))


def test_unnamed_index_column_of_a_plain_table_is_not_reported_as_ignored(tmp_path, registry, mapper) -> None:
    source = CsvSource(write(tmp_path, ",station_id,day,pm10\n0,st-1,2020-01-01 00:00:00+00:00,3\n"), registry,
                       mapper)
    assert [(m.station_id, m.metric, m.value) for m in source] == [("st-1", "pm10", 3.0)]
    assert source.stats.ignored_columns == []


def test_cli_takes_time_column_and_lists_station_names(kafka_broker, unique_topics, tmp_path) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 1)])
    env = {**os.environ, "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "CITYSENSE_READINGS_TOPIC": unique_topics["readings_topic"]}
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "replay", str(write(tmp_path, TWO_TIMES)),
                           "--time-column", "day", "--no-progress"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "replayed 2 readings from 1 stations (2019-01-01 00:00 .. 2019-01-01 01:00 UTC)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "replay", str(NOTEBOOK_EXPORT),
                           "--no-progress"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "replayed 12 readings from 2 stations" in proc.stderr
    assert (f"station names: {BOX_K} 'Kreuzberg Oranienstr'; {BOX_N} 'Neukölln, Sonnenallee'" in proc.stderr)
