"""Rules, windows and the alert lifecycle against hand-computed expectations (no Spark needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from citysense_scorer.alerts.engine import AlertEngine, BatchInput
from citysense_scorer.alerts.engine_log import EngineLog
from citysense_scorer.alerts.rules import RuleSet, load_rules

REPO = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000_000  # ms


def ruleset(**over) -> RuleSet:
    rule = {"id": "pm-test", "metric": "pm2_5", "aggregation": "mean", "window": "1m", "partial": True,
            "comparator": ">", "for": "0s", "clear": 30, "cooldown": "5m", "source": "test",
            "bands": [{"threshold": 50, "severity": "warning", "label": "High"},
                      {"threshold": 100, "severity": "critical", "label": "Very high"}]}
    rule.update(over)
    return RuleSet.model_validate({"rules": [rule]})


def frame(station: str, start_s: int, values: list[float], outliers: list[list[str]] | None = None) -> pd.DataFrame:
    n = len(values)
    outliers = outliers or [[] for _ in values]
    return pd.DataFrame({
        "station_id": [station] * n, "ts_ms": [T0 + (start_s + i) * 1000 for i in range(n)],
        "lat": [52.5] * n, "lon": [13.4] * n, "pm2_5": values, "heat_index": [np.nan] * n,
        "n_outliers": [len(o) for o in outliers], "outlier_names": [",".join(o) for o in outliers],
        "zmax": [5.0 if o else 0.5 for o in outliers],
    })


def run(engine: AlertEngine, batch: int, df: pd.DataFrame):
    return engine.apply(batch, engine.reduce(df))


@pytest.fixture
def engine(registry) -> AlertEngine:
    return AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=600_000)


def test_default_rules_load_and_cover_the_required_sources(registry) -> None:
    rules = load_rules(REPO / "config" / "rules.yaml", registry)
    by_id = {r.id: r for r in rules.rules}
    assert [b.threshold for b in by_id["pm25-epa-aqi-24h"].bands] == [9.0, 35.4, 55.4, 125.4, 225.4]
    assert by_id["pm25-who-24h"].bands[0].threshold == 15 and by_id["pm10-who-24h"].bands[0].threshold == 45
    assert by_id["pm25-eu-24h"].bands[0].threshold == 25 and by_id["pm10-eu-24h"].bands[0].threshold == 45
    assert by_id["noise-who-24h"].bands[0].threshold == 53
    assert [b.threshold for b in by_id["heat-index-10m"].bands] == [27, 32, 39, 52]
    assert all(r.source for r in rules.rules)


def test_pm25_500_at_1hz_opens_critical_within_10s(registry) -> None:
    rules = load_rules(REPO / "config" / "rules.yaml", registry)
    engine = AlertEngine(rules, registry, watermark_ms=300_000, outlier_cooldown_ms=600_000)
    events = []
    for second in range(10):  # one micro-batch per second, like a 1 Hz station with a 1 s trigger
        events += run(engine, second, frame("s1", second, [500.0]))
    opened = [e for e in events if e.state == "open" and e.severity == "critical"]
    assert opened and opened[0].rule_id == "pm25-acute-1m"
    assert (opened[0].event_time.timestamp() * 1000 - T0) <= 10_000
    assert "PM2.5 1-minute mean 500.0 µg/m³ exceeds 225.4 µg/m³ (US EPA AQI PM2.5 breakpoints: Hazardous)" \
        == opened[0].message


def test_open_update_resolve_cooldown(engine) -> None:
    # mean of [60, 60] = 60 > 50: open warning
    ev = run(engine, 0, frame("s1", 0, [60, 60]))
    assert [(e.state, e.severity, e.value) for e in ev] == [("open", "warning", 60.0)]
    alert_id = ev[0].alert_id
    # same band again: no event
    assert run(engine, 1, frame("s1", 2, [60])) == []
    # mean of [60, 60, 60, 300] = 120 > 100: update to critical (band change)
    ev = run(engine, 2, frame("s1", 3, [300]))
    assert [(e.state, e.severity, e.value) for e in ev] == [("update", "critical", 120.0)]
    assert ev[0].alert_id == alert_id
    # 1-minute window: 61 s later only the new readings count; mean 40 is between clear (30) and 50 -> stays open,
    # drops to the lowest band -> update to warning
    ev = run(engine, 3, frame("s1", 70, [40]))
    assert [(e.state, e.severity) for e in ev] == [("update", "warning")]
    # mean (40 + 10) / 2 = 25 <= clear 30: resolved
    ev = run(engine, 4, frame("s1", 71, [10]))
    assert [(e.state, e.alert_id) for e in ev] == [("resolved", alert_id)]
    assert ev[0].resolved_at is not None
    # back above within the 5-minute cooldown: no re-open (window now holds 40, 10, 200, 200 -> mean 112.5)
    assert run(engine, 5, frame("s1", 72, [200, 200])) == []
    # after the cooldown: opens again as a new alert
    ev = run(engine, 6, frame("s1", 72 + 301, [200]))
    assert [e.state for e in ev] == ["open"] and ev[0].alert_id != alert_id


def test_for_duration_must_hold(registry) -> None:
    engine = AlertEngine(ruleset(**{"for": "5s"}), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    assert run(engine, 0, frame("s1", 0, [80, 80, 80])) == []  # held 2 s
    assert run(engine, 1, frame("s1", 3, [80])) == []  # held 3 s
    ev = run(engine, 2, frame("s1", 5, [80]))  # held 5 s
    assert [e.state for e in ev] == ["open"]


def test_partial_window_policy(registry) -> None:
    engine = AlertEngine(ruleset(partial=False), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    assert run(engine, 0, frame("s1", 0, [80] * 30)) == []  # 30 s of a 1-minute window: not complete
    ev = run(engine, 1, frame("s1", 30, [80] * 30))  # spans 59 s = the 60 buckets of 1 s
    assert [e.state for e in ev] == ["open"]


def test_max_and_value_aggregations(registry) -> None:
    engine = AlertEngine(ruleset(aggregation="max"), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    ev = run(engine, 0, frame("s1", 0, [10, 120, 10]))
    assert [(e.state, e.value, e.severity) for e in ev] == [("open", 120.0, "critical")]
    engine = AlertEngine(ruleset(aggregation="value"), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    assert run(engine, 0, frame("s1", 0, [120, 10])) == []  # the latest reading (10) decides


def test_late_readings_are_flagged_and_do_not_reopen(engine) -> None:
    run(engine, 0, frame("s1", 0, [60]))
    run(engine, 1, frame("s1", 1, [5]))  # resolved
    run(engine, 2, frame("s1", 1000, [5]))  # event time moves on: watermark = 1000 s - 300 s
    late = frame("s1", 10, [500])
    mask = engine.late_mask(late["ts_ms"].to_numpy())
    assert mask.all()
    assert run(engine, 3, late[~mask]) if (~mask).any() else True


def test_a_station_whose_clock_runs_ahead_cannot_make_other_stations_late(engine) -> None:
    """Event time moves the watermark only up to the broker's clock of its reading (``clock_ms``): a station 290 s
    ahead (inside the 300 s future tolerance) leaves the watermark at broker time - 300 s, and another station's
    reading 30 s old still counts and alerts."""
    run(engine, 0, frame("fast", 290, [10]).assign(clock_ms=T0))
    assert engine.watermark() == T0 - 300_000
    slow = frame("s1", -30, [500]).assign(clock_ms=T0)
    assert not engine.late_mask(slow["ts_ms"].to_numpy()).any()
    assert [(e.station_id, e.state) for e in run(engine, 1, slow)] == [("s1", "open")]
    # readings in the past (a replay, a backlog) move it by their own event time, as before
    run(engine, 2, frame("s1", 600, [5]).assign(clock_ms=T0 + 3_600_000))
    assert engine.watermark() == T0 + 300_000


def test_outliers_rate_limited_per_station(engine) -> None:
    ev = run(engine, 0, frame("s2", 0, [10], [["pm2_5"]]))
    assert [(e.kind, e.state, e.severity) for e in ev] == [("outlier", "open", "info")]
    assert run(engine, 1, frame("s2", 1, [10], [["pm2_5"]])) == []  # still open: no new event
    ev = run(engine, 2, frame("s2", 2, [10]))
    assert [e.state for e in ev] == ["resolved"]
    assert run(engine, 3, frame("s2", 60, [10], [["temperature"]])) == []  # within 10 min of the last one
    ev = run(engine, 4, frame("s2", 601, [10], [["temperature"]]))
    assert [e.state for e in ev] == ["open"]


def test_ids_are_deterministic_and_replay_is_exact(registry, tmp_path) -> None:
    batches = [frame("s1", 0, [60, 60]), frame("s1", 2, [300]), frame("s1", 70, [5])]

    def run_all(root: Path, crash_after: int | None) -> list:
        engine = AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
        log = EngineLog(root, snapshot_every=2)
        out = []
        for i, df in enumerate(batches):
            data = engine.reduce(df)
            events = engine.apply(i, data)
            log.write(i, data, events, [], engine, watermark=0)
            out += events
            if crash_after == i:
                restarted = AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
                EngineLog(root, snapshot_every=2).recover(restarted)
                assert restarted.state.version == i
                engine = restarted
        return out

    straight = run_all(tmp_path / "a", None)
    crashed = run_all(tmp_path / "b", 1)
    assert [e.event_id for e in straight] == [e.event_id for e in crashed]
    assert [e.state for e in straight] == ["open", "update", "resolved"]


def test_rules_file_is_validated(tmp_path, registry) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(yaml.safe_dump({"rules": [{"id": "x", "metric": "radon", "aggregation": "mean", "window": "1m",
                                              "clear": 1, "source": "s",
                                              "bands": [{"threshold": 2, "severity": "info", "label": "l"}]}]}))
    with pytest.raises(ValueError, match="unknown metric"):
        load_rules(bad, registry)


def hourly(station: str, values: list[float]) -> pd.DataFrame:
    df = frame(station, 0, values)
    return df.assign(ts_ms=[T0 + i * 3_600_000 for i in range(len(values))])


def test_an_episode_inside_one_batch_opens_and_resolves_at_its_event_times(registry) -> None:
    # A replayed file (or a backlog) arrives in one micro-batch: hourly readings 10, 300, 300, 300, 10.
    engine = AlertEngine(ruleset(**{"for": "5s"}), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    events = run(engine, 0, hourly("s1", [10, 300, 300, 300, 10]))
    assert [(e.state, e.event_time.timestamp() * 1000 - T0) for e in events] == [
        ("open", 2 * 3_600_000),  # first seen at 01:00, held >= 5 s by the 02:00 evaluation
        ("resolved", 4 * 3_600_000),  # the 04:00 reading falls to the clear level
    ]


def test_slices_give_the_same_events_whether_data_comes_in_one_batch_or_many(registry) -> None:
    values = [10, 80, 120, 120, 20, 10, 90, 90]
    whole = AlertEngine(ruleset(**{"for": "5s"}), registry, watermark_ms=10**9, outlier_cooldown_ms=0)
    together = [(e.state, e.severity, e.event_time) for e in run(whole, 0, hourly("s1", values))]
    piecewise = AlertEngine(ruleset(**{"for": "5s"}), registry, watermark_ms=10**9, outlier_cooldown_ms=0)
    apart = []
    df = hourly("s1", values)
    for i in range(len(values)):
        apart += [(e.state, e.severity, e.event_time) for e in run(piecewise, i, df.iloc[i:i + 1])]
    assert together == apart
    # 01:00 80 pending; 02:00 120 opens critical; 04:00 20 resolves; 06:00 90 pending; 07:00 90 opens warning.
    assert [(s, sev) for s, sev, _ in together if s == "open"] == [("open", "critical"), ("open", "warning")]
    assert [s for s, _, _ in together] == ["open", "resolved", "open"]


# -- clock faults ----------------------------------------------------------------------------------------------------
DAY_MS = 86_400_000


def future(station: str, start_s: int, n: int, ahead_ms: int = DAY_MS) -> pd.DataFrame:
    """Readings of ``station`` rejected as from the future: event time, and the broker's clock that judged them."""
    clock = [T0 + (start_s + i) * 1000 for i in range(n)]
    return pd.DataFrame({"station_id": [station] * n, "ts_ms": [c + ahead_ms for c in clock], "clock_ms": clock})


def clocked(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(clock_ms=df["ts_ms"])


def run_clocks(engine: AlertEngine, batch: int, valid: pd.DataFrame, rejected: pd.DataFrame):
    data = engine.reduce(valid) if len(valid) else BatchInput(pd.DataFrame(), pd.DataFrame())
    return engine.apply(batch, replace(data, clocks=engine.reduce_clocks(rejected, valid)))


def test_a_station_whose_readings_come_from_the_future_gets_its_own_clock_fault(engine) -> None:
    # "gw" sends readings a day ahead; "s1" is fine and raises nothing
    ev = run_clocks(engine, 0, clocked(frame("s1", 0, [10])), future("gw", 0, 3))
    assert [(e.station_id, e.kind, e.state, e.rule_id, e.severity) for e in ev] == \
        [("gw", "sensor_fault", "open", "fault-clock", "warning")]
    opened = ev[0]
    assert opened.opened_at.timestamp() * 1000 == T0  # the broker's clock, not the station's day-ahead one
    assert "24.0 h ahead" in opened.message
    # still ahead: stays open, no new event; s1 unaffected
    assert run_clocks(engine, 1, clocked(frame("s1", 3, [10])), future("gw", 3, 2)) == []
    # in time again: resolved at the first reading after the last one from the future
    ev = run_clocks(engine, 2, clocked(frame("gw", 10, [10, 10])), future("gw", 5, 1))
    assert [(e.state, e.alert_id, e.event_time.timestamp() * 1000) for e in ev] == \
        [("resolved", opened.alert_id, T0 + 10_000)]
    assert run_clocks(engine, 3, clocked(frame("gw", 12, [10])), future("gw", 0, 0)) == []


def test_the_clock_fault_is_deterministic_and_survives_recovery(registry, tmp_path) -> None:  # noqa: ANN001
    def play(engine: AlertEngine, log: EngineLog | None, batches: range) -> list:
        out = []
        for b in batches:
            valid, rejected = clocked(frame("s1", b, [10])), future("gw", b, 1 if b < 4 else 0)
            gw_back = valid if b < 4 else clocked(frame("gw", b, [9]))
            data = replace(engine.reduce(valid), clocks=engine.reduce_clocks(rejected, gw_back))
            events = engine.apply(b, data)
            if log is not None:
                log.write(b, data, events, [], engine, watermark=engine.watermark())
            out += events
        return out

    first = play(AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=0), None, range(6))
    log = EngineLog(tmp_path, snapshot_every=2)
    crashed = AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    before = play(crashed, log, range(3))
    recovered = AlertEngine(ruleset(), registry, watermark_ms=300_000, outlier_cooldown_ms=0)
    log.recover(recovered)
    after = play(recovered, log, range(3, 6))
    assert [e.event_id for e in first] == [e.event_id for e in before + after]
    assert [(e.rule_id, e.state) for e in first] == [("fault-clock", "open"), ("fault-clock", "resolved")]
