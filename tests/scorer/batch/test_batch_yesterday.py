"""The chart's daily job runs ``citysense-scorer batch --day yesterday`` (a schedule's arguments are fixed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from citysense_scorer.batch.daily import resolve_day

from tests.scorer.yesterday_store import yesterday_store


def test_yesterday_is_the_previous_utc_day() -> None:
    assert resolve_day("yesterday", datetime(2026, 3, 1, 0, 5, tzinfo=UTC)) == "2026-02-28"
    # 01:30 in UTC+2 is still the previous UTC day: yesterday is counted from the UTC date
    assert resolve_day("yesterday", datetime(2026, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-02-27"
    assert resolve_day("2026-01-31") == "2026-01-31"
    for bad in ("31/01/2026", "tomorrow", "2026-02-30"):
        with pytest.raises(ValueError):
            resolve_day(bad)


@pytest.mark.parametrize("argv", [["batch"], ["batch", "--day", "yesterday"]], ids=["default", "word"])
def test_cli_aggregates_yesterday(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from citysense_scorer.cli import main

    store, yesterday = yesterday_store(tmp_path / "db.sqlite", "st-y", hours=20, base=20.0)
    try:
        monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(store.path))
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        if out["day"] != yesterday.strftime("%Y-%m-%d"):  # the UTC day changed during the test
            pytest.skip("ran across midnight UTC")
        [pm10] = store.read_daily_aggregates("st-y")
        assert (pm10.day, pm10.hours, pm10.complete) == (yesterday.strftime("%Y-%m-%d"), 20, True)
    finally:
        store.close()
