"""Replay of CSV exports: both layouts, event-time order, pacing, skipped values, errors naming row and column,
and readings produced into the real broker and read back with their original timestamps."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.kafka import TopicSpec, ensure_topics
from citysense_common.registry import load_registry
from citysense_simulator.opensensemap_mapping import load_mapper
from citysense_simulator.progress import ProgressBar
from citysense_simulator.replay import Pacer, parse_speed, replay
from citysense_simulator.replay_csv import CsvSource, ReplayError
from citysense_simulator.replay_sort import sorted_measurements
from citysense_simulator.runner import KafkaPublisher
from citysense_simulator.settings import load

from .kafka_readback import consume, readings

FIXTURES = Path(__file__).resolve().parent / "fixtures"
DESCRIPTIVE = FIXTURES / "berlin_newyear_2019_descriptive.csv"
PLAIN = FIXTURES / "readings_plain.csv"
BOX_K, BOX_N, BOX_D = "5c3e1f2a9d8b7c001a2b3c4d", "5c3e1f2a9d8b7c001a2b3d10", "5c3e1f2a9d8b7c001a2b3e20"


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def mapper(registry):
    return load_mapper(registry)


class FakeTime:
    """Injected clock and sleep: sleeping advances the clock and is recorded, nothing waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def single_partition(kafka_broker, unique_topics):
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 1)])
    return load(kafka_bootstrap=kafka_broker.bootstrap, **unique_topics)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_descriptive_export_replays_in_event_time_order_with_original_timestamps(kafka_broker, unique_topics,
                                                                                registry, mapper) -> None:
    settings = single_partition(kafka_broker, unique_topics)
    result = replay(DESCRIPTIVE, KafkaPublisher(settings), registry, mapper, speed=None)
    # 150 rows = 2 phenomena x 3 boxes x 25 hours; 5 empty values; PM10 and PM2.5 of a box/hour share a reading.
    assert (result.stats.rows, result.stats.values, result.stats.empty, result.stats.unmapped) == (150, 145, 5, 0)
    assert result.readings == 73  # 75 box-hours, minus Dahlem's two offline hours
    assert result.undelivered == 0 and result.failed == 0
    got = readings(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], 1, 73))
    assert len(got) == 73
    times = [r.ts for r in got]
    assert times == sorted(times)  # one partition: the publishing order itself is event-time order
    assert {r.station_id for r in got} == {BOX_K, BOX_N, BOX_D}
    by_key = {(r.station_id, r.ts): r for r in got}
    peak = by_key[(BOX_N, at("2019-01-01T01:00:00"))]
    assert peak.metrics == {"pm10": 212.6, "pm2_5": 159.4}
    assert (peak.location.lat, peak.location.lon) == (52.4781, 13.4432)
    assert by_key[(BOX_K, at("2019-01-01T11:00:00"))].metrics == {"pm10": 25.3}  # its PM2.5 value was empty
    assert (BOX_D, at("2019-01-01T05:00:00")) not in by_key  # both values empty: no reading
    for station in (BOX_K, BOX_N, BOX_D):
        seqs = [r.seq for r in got if r.station_id == station]
        assert seqs == list(range(len(seqs)))  # per station, increasing with event time


def test_plain_csv_with_aliases_semicolons_and_merged_rows(kafka_broker, unique_topics, registry, mapper) -> None:
    settings = single_partition(kafka_broker, unique_topics)
    result = replay(PLAIN, KafkaPublisher(settings), registry, mapper)
    assert result.stats.layout == "wide"
    assert result.stats.ignored_columns == ["comment"]
    assert result.stats.empty == 11
    got = readings(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], 1, 4))
    assert [(r.station_id, r.ts.strftime("%H:%M"), r.seq) for r in got] == [
        ("hof-2", "07:55", 0), ("hof-1", "08:00", 0), ("hof-1", "08:05", 1), ("hof-2", "08:10", 1)]
    assert got[0].metrics == {"pm2_5": 8.0, "humidity": 79.0, "noise_level": 60.1}
    merged = got[2]
    assert merged.metrics == {"pm2_5": 13.5, "humidity": 82.0, "temperature": 4.0}  # two rows, one instant
    assert (merged.location.lat, merged.location.lon) == (52.51, 13.39)  # inherited from the station's earlier row


def test_speed_compresses_event_time(kafka_broker, unique_topics, registry, mapper) -> None:
    settings = single_partition(kafka_broker, unique_topics)
    fake = FakeTime()
    replay(DESCRIPTIVE, KafkaPublisher(settings), registry, mapper, speed=3600, clock=fake.clock, sleep=fake.sleep)
    # 24 hours of data at one hour per second: 24 s of (fake) sleeping, one sleep per new hour.
    assert sum(fake.sleeps) == pytest.approx(24.0)
    assert len(fake.sleeps) == 24 and all(s == pytest.approx(1.0) for s in fake.sleeps)
    fake_max = FakeTime()
    replay(DESCRIPTIVE, KafkaPublisher(settings), registry, mapper, speed=None, clock=fake_max.clock,
           sleep=fake_max.sleep)
    assert fake_max.sleeps == []


def test_pacer_only_sleeps_when_ahead_of_schedule() -> None:
    fake = FakeTime()
    pacer = Pacer(60.0, fake.clock, fake.sleep)
    pacer.wait_for(0.0)
    pacer.wait_for(600.0)  # 10 min of data at 60x: 10 s
    fake.now += 30  # publishing took 30 s: behind schedule
    pacer.wait_for(1200.0)  # due at +20 s, now +40 s: no sleep
    assert fake.sleeps == [pytest.approx(10.0)]


@pytest.mark.parametrize(("text", "speed"), [("3600", 3600.0), ("0", None), ("max", None), ("MAX", None),
                                             ("0.5", 0.5)])
def test_parse_speed(text, speed) -> None:
    assert parse_speed(text) == speed


def test_parse_speed_rejects_nonsense() -> None:
    for text in ("-1", "fast", "nan"):
        with pytest.raises(ValueError, match="--speed"):
            parse_speed(text)


def test_external_sort_matches_in_memory_order(registry, mapper) -> None:
    in_memory = list(sorted_measurements(CsvSource(DESCRIPTIVE, registry, mapper)))
    spilled = list(sorted_measurements(CsvSource(DESCRIPTIVE, registry, mapper), chunk=7))
    assert [(m.ts_ms, m.station_id, m.metric, m.value, m.lat) for m in spilled] == \
        [(m.ts_ms, m.station_id, m.metric, m.value, m.lat) for m in in_memory]
    assert len(in_memory) == 145


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "input.csv"
    path.write_text(text, encoding="utf-8")
    return path


TIDY_HEADER = "sensorId,boxId,boxName,lat,lon,phenomenon,unit,time_start,arithmeticMean_1h\n"
GOOD = "5a0000000000000000000001,5b0000000000000000000001,Box,52.5,13.4,PM10,µg/m³,2019-01-01T00:00:00.000Z,{v}\n"


@pytest.mark.parametrize(("text", "message"), [
    (TIDY_HEADER + GOOD.format(v=1) + GOOD.format(v=2).replace("2019-01-01T00", "01/01/2019 00"),
     r"row 3, column 'time_start': '01/01/2019 00:00:00.000Z' is not an RFC 3339"),
    (TIDY_HEADER + GOOD.format(v="12,5").replace(",12,5", ",\"12,5\""),
     r"row 2, column 'arithmeticMean_1h': '12,5' is not a number"),
    (TIDY_HEADER + GOOD.format(v=1).replace(",52.5,", ",95.0,"), r"row 2, column 'lat': 95.0 is outside ±90"),
    (TIDY_HEADER + GOOD.format(v=1).replace("5b0000000000000000000001", "box #1"),
     r"row 2, column 'boxId': station id 'box #1' must match"),
    ("station_id,ts,pm10\nst-1,2020-01-01T00:00:00Z,3\nst-1,2020-01-01T01:00:00Z,3,4\n",
     r"row 3: 4 cells but the header has 3 columns"),
    ("station_id,pm10\nst-1,3\n", r"row 1: no time column"),
    ("sensorId,time_start,arithmeticMean_1d\n5a8e8c6c8432c3001bfe414a,2018-02-02T00:00:00.000Z,138\n",
     r"row 1: a value column but no 'phenomenon' column; pass --phenomenon"),
    ("station_id,ts,wifi\nst-1,2020-01-01T00:00:00Z,3\n", r"row 1: no metric columns"),
    ("", r"row 1: the file is empty"),
])
def test_unreadable_files_name_the_row_and_the_column(tmp_path, registry, mapper, text, message) -> None:
    with pytest.raises(ReplayError, match=message):
        list(CsvSource(write(tmp_path, text), registry, mapper))


def test_missing_file_and_binary_file_errors(tmp_path, registry, mapper) -> None:
    with pytest.raises(ReplayError, match="cannot read .*nope.csv"):
        list(CsvSource(tmp_path / "nope.csv", registry, mapper))
    binary = tmp_path / "x.csv"
    binary.write_bytes(b"station_id,ts,pm10\n\xff\xfe\x00garbage\n")
    with pytest.raises(ReplayError, match="not UTF-8"):
        list(CsvSource(binary, registry, mapper))


def test_phenomenon_option_fills_in_for_exports_without_that_column(tmp_path, registry, mapper) -> None:
    path = write(tmp_path, "sensorId,time_start,arithmeticMean_1d\n5a8e8c6c8432c3001bfe414a,"
                           "2018-02-02T00:00:00.000Z,138\n5a8e8c6c8432c3001bfe414a,2018-02-03T00:00:00.000Z,104\n")
    got = list(CsvSource(path, registry, mapper, phenomenon="PM10", unit="µg/m³"))
    assert [(m.station_id, m.metric, m.value) for m in got] == [("5a8e8c6c8432c3001bfe414a", "pm10", 138.0),
                                                              ("5a8e8c6c8432c3001bfe414a", "pm10", 104.0)]


def test_unmapped_phenomena_rows_are_skipped_and_counted(tmp_path, registry, mapper) -> None:
    path = write(tmp_path, TIDY_HEADER + GOOD.format(v=1) + GOOD.format(v=-70).replace("PM10,µg/m³", "Wifi,dBm"))
    source = CsvSource(path, registry, mapper)
    assert len(list(source)) == 1 and source.stats.unmapped == 1


def test_progress_bar_shows_count_percent_rate_and_eta() -> None:
    fake = FakeTime()
    out = io.StringIO()
    bar = ProgressBar(1000, stream=out, clock=fake.clock, tty=True)
    fake.now += 2
    bar.advance(250)
    line = out.getvalue().split("\r")[-1]
    assert "25.0%" in line and "250/1,000 rows" in line and "125/s" in line and "ETA 0:00:06" in line
    fake.now += 6
    bar.advance(750)
    bar.finish()
    assert out.getvalue().endswith("100.0% 1,000/1,000 rows 125/s ETA 0:00:00\n")


def test_cli_replays_a_file_with_a_progress_bar(kafka_broker, unique_topics) -> None:
    ensure_topics(kafka_broker.bootstrap, [TopicSpec(unique_topics["readings_topic"], 3)])
    env = {**os.environ, "CITYSENSE_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
           "CITYSENSE_READINGS_TOPIC": unique_topics["readings_topic"]}
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "replay", str(DESCRIPTIVE), "--speed",
                           "max"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "100.0% 145/145 rows" in proc.stderr  # rows with at least one value
    assert "replayed 73 readings from 3 stations (2018-12-31 23:00 .. 2019-01-01 23:00 UTC)" in proc.stderr
    assert "5 empty values" in proc.stderr
    assert len(consume(kafka_broker.bootstrap, unique_topics["readings_topic"], 3, 73)) == 73


def test_cli_reports_an_unreadable_file_with_exit_code_2(tmp_path) -> None:
    path = write(tmp_path, "station_id,ts,pm10\nst-1,yesterday,3\n")
    proc = subprocess.run([sys.executable, "-m", "citysense_simulator.cli", "replay", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "row 2, column 'ts': 'yesterday' is not an RFC 3339" in proc.stderr
