"""Batch trends: daily aggregates (hourly-mean based, completeness), idempotent re-runs, yearly exceedance days."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.settings import SettingsError
from citysense_common.store.base import DailyAggregate, EnrichedReading, StationRecord
from citysense_common.store.sqlite import SQLiteStore
from citysense_scorer.batch.aggregates import DEFAULT_ALLOWANCES, Allowance, yearly_summary
from citysense_scorer.batch.daily import run_day
from citysense_scorer.batch.settings import batch_settings
from citysense_scorer.cli import main

DAY = "2026-03-10"
START = datetime(2026, 3, 10, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "db.sqlite")
    s.migrate()
    yield s
    s.close()


def seed(store: SQLiteStore, station: str, hours: int, pm10: float, per_hour: int = 6) -> None:
    store.upsert_stations([StationRecord(station, START, 0, {"pm10": pm10})])
    readings = []
    for h in range(hours):
        for k in range(per_hour):
            ts = START + timedelta(hours=h, minutes=10 * k)
            readings.append(EnrichedReading(station, ts, h * 100 + k, {"pm10": pm10 + h, "temperature": 5.0}))
    store.write_readings(readings)


def test_daily_mean_is_the_mean_of_hourly_means_and_completeness(store: SQLiteStore) -> None:
    seed(store, "st-full", 18, 40.0)
    seed(store, "st-gappy", 17, 40.0)
    # 60 extra readings in hour 0 must not drag the daily mean towards hour 0
    store.write_readings([EnrichedReading("st-full", START + timedelta(seconds=i), 10_000 + i, {"pm10": 40.0})
                          for i in range(60)])
    run_day(store, DAY)
    [full] = store.read_daily_aggregates("st-full", metric="pm10")
    assert full.mean == pytest.approx(40.0 + 8.5) and full.hours == 18 and full.complete
    assert full.count == 18 * 6 + 60 and full.max == 57.0
    [gappy] = store.read_daily_aggregates("st-gappy", metric="pm10")
    assert gappy.hours == 17 and not gappy.complete


def test_rerun_is_idempotent_and_picks_up_late_readings(store: SQLiteStore) -> None:
    seed(store, "st-1", 20, 30.0)
    first = run_day(store, DAY)
    before = store.read_daily_aggregates("st-1")
    assert run_day(store, DAY) == first
    assert store.read_daily_aggregates("st-1") == before
    store.write_readings([EnrichedReading("st-1", START + timedelta(hours=22), 99_999, {"pm10": 100.0})])
    run_day(store, DAY)
    [pm10] = store.read_daily_aggregates("st-1", metric="pm10")
    assert pm10.hours == 21 and pm10.max == 100.0


def test_faulty_values_and_other_days_are_left_out(store: SQLiteStore) -> None:
    store.upsert_stations([StationRecord("st-1", START, 0, {})])
    store.write_readings([
        EnrichedReading("st-1", START + timedelta(hours=1), 1, {"pm10": 20.0, "temperature": 3.0}),
        EnrichedReading("st-1", START + timedelta(hours=2), 2, {"pm10": 900.0, "temperature": 3.5}, faults=("pm10",)),
        EnrichedReading("st-1", START - timedelta(seconds=1), 3, {"pm10": 500.0}),
        EnrichedReading("st-1", START + timedelta(days=1), 4, {"pm10": 500.0}),
    ])
    run_day(store, DAY)
    by_metric = {a.metric: a for a in store.read_daily_aggregates("st-1")}
    assert by_metric["pm10"].max == 20.0 and by_metric["pm10"].count == 1
    assert by_metric["temperature"].count == 2


def daily(metric: str, n: int, mean: float, complete: bool = True, start: int = 0) -> list[DailyAggregate]:
    base = datetime(2026, 1, 1)
    return [DailyAggregate("st-1", metric, (base + timedelta(days=start + i)).strftime("%Y-%m-%d"), mean, mean + 5,
                           100, 24 if complete else 10, complete) for i in range(n)]


def test_exceedance_days_against_the_eu_allowance() -> None:
    at_limit = daily("pm10", 18, 50.0) + daily("pm10", 100, 20.0, start=18) + daily("pm10", 5, 80.0, False, 200)
    [summary] = yearly_summary(at_limit, 2026)
    [eu] = summary.exceedances
    assert (eu.days_above, eu.allowed_days, eu.exceeded) == (18, 18, False)  # incomplete days do not count
    assert summary.days == 123 and summary.complete_days == 118
    [summary] = yearly_summary(at_limit + daily("pm10", 1, 45.5, start=300), 2026)
    assert summary.exceedances[0].days_above == 19 and summary.exceedances[0].exceeded
    [summary] = yearly_summary(daily("pm10", 30, 45.0), 2026)  # "above 45": exactly 45 is not an exceedance
    assert summary.exceedances[0].days_above == 0


def test_allowances_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert batch_settings().exceedance_allowances == DEFAULT_ALLOWANCES
    monkeypatch.setenv("CITYSENSE_EXCEEDANCE_ALLOWANCES", "")
    assert batch_settings().exceedance_allowances == DEFAULT_ALLOWANCES
    monkeypatch.setenv("CITYSENSE_EXCEEDANCE_ALLOWANCES", json.dumps(
        [{"id": "who-pm10", "metric": "pm10", "limit": 45, "allowed_days": 3}]))
    custom = batch_settings().exceedance_allowances
    assert custom == (Allowance("who-pm10", "pm10", 45.0, 3, ""),)
    [summary] = yearly_summary(daily("pm10", 4, 50.0), 2026, custom)
    assert summary.exceedances[0].exceeded
    monkeypatch.setenv("CITYSENSE_EXCEEDANCE_ALLOWANCES", "[{not json")
    with pytest.raises(SettingsError, match="CITYSENSE_EXCEEDANCE_ALLOWANCES"):
        batch_settings()


def test_cli_writes_aggregates(store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    seed(store, "st-1", 24, 50.0)
    monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(store.path))
    assert main(["batch", "--day", DAY]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["aggregates"] == 2 and out["year_to_date"]["st-1"][0]["metric"] == "pm10"
    assert len(store.read_daily_aggregates("st-1")) == 2
    with pytest.raises(SystemExit):
        main(["batch", "--day", "10/03/2026"])


def test_scorer_cli_batch_subcommand(store: SQLiteStore, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    seed(store, "st-1", 24, 50.0)
    seed(store, "st-2", 24, 10.0)
    monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(store.path))
    assert main(["batch", "--day", DAY, "--station", "st-2"]) == 0
    assert json.loads(capsys.readouterr().out)["aggregates"] == 2
    assert store.read_daily_aggregates("st-1") == [] and len(store.read_daily_aggregates("st-2")) == 2
