"""Station health composite: state survives a JSON round trip mid-sequence; sink helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from citysense_common.contract import AlertKind, AlertState
from citysense_common.registry import Registry
from citysense_scorer.baselines import BaselineConfig
from citysense_scorer.forecast import ForecastTarget
from citysense_scorer.health import HealthBucket, HealthContext, Row, StationHealth
from citysense_scorer.health_spark import mask_faulty, split_health
from citysense_scorer.offline import OfflineConfig

T0 = 1_767_225_600_000


def ctx(registry: Registry) -> HealthContext:
    return HealthContext(metrics=dict(registry.metrics), profile="city", baseline=BaselineConfig(warmup=20),
                         targets=(ForecastTarget("pm25-eu-24h", "pm2_5", 86_400_000, 25.0),))


def sequence() -> list[Row]:
    rng = np.random.default_rng(9)
    rows = [Row(T0 + i * 1000, {"temperature": round(float(rng.normal(10, 1)), 2), "pm2_5": 8.0 + i % 5,
                                "pm10": 15.0 + i % 4}, 52.5, 13.4) for i in range(60)]
    rows += [Row(T0 + (60 + i) * 1000, {"temperature": 30.0, "pm2_5": 9.0 + i % 3, "pm10": 15.0 + i % 4})
             for i in range(40)]
    return rows


def reloaded(health: StationHealth, registry: Registry) -> StationHealth:
    """Through the text the state store keeps: a bucket document holding this one station."""
    bucket = HealthBucket(ctx(registry))
    bucket.stations[health.station_id] = health.to_doc()
    doc = HealthBucket(ctx(registry), bucket.dump_json()).stations[health.station_id]
    return StationHealth.from_doc(health.station_id, ctx(registry), doc)


def test_state_round_trip_gives_identical_results(registry: Registry) -> None:
    rows = sequence()
    whole = StationHealth("st-1", ctx(registry))
    res_a, ev_a, _ = whole.process(rows, now_ms=T0)
    first = StationHealth("st-1", ctx(registry))
    res_b1, ev_b1, _ = first.process(rows[:55], now_ms=T0)
    resumed = reloaded(first, registry)
    res_b2, ev_b2, _ = resumed.process(rows[55:], now_ms=T0)
    assert [(r.faults, r.baseline_z) for r in res_a] == [(r.faults, r.baseline_z) for r in res_b1 + res_b2]
    assert [e.event_id for e in ev_a] == [e.event_id for e in ev_b1 + ev_b2]
    assert [(e.kind, e.state) for e in ev_a] == [(AlertKind.SENSOR_FAULT, AlertState.OPEN)]
    assert ev_a[0].location is not None  # faults carry the station's location when known


def test_offline_through_the_composite(registry: Registry) -> None:
    h = StationHealth("st-1", ctx(registry))
    _, _, timer = h.process([Row(T0, {"temperature": 10.0})], now_ms=T0 + 300)
    restored = reloaded(h, registry)
    [opened] = restored.on_timer(timer)
    assert opened.kind is AlertKind.STATION_OFFLINE
    _, events, _ = restored.process([Row(T0 + 500_000, {"temperature": 10.5})], now_ms=T0 + 500_100)
    assert [(e.kind, e.state) for e in events] == [(AlertKind.STATION_OFFLINE, AlertState.RESOLVED)]


def test_mask_faulty_nulls_values_and_heat_index() -> None:
    frame = pd.DataFrame({"temperature": [30.0, 31.0], "pm2_5": [5.0, 6.0], "heat_index": [33.0, 34.0]})
    faults = pd.DataFrame({"fault_temperature": [True, False], "fault_pm2_5": [False, False]})
    out = mask_faulty(frame, faults)
    assert np.isnan(out.loc[0, "temperature"]) and np.isnan(out.loc[0, "heat_index"])
    assert out.loc[0, "pm2_5"] == 5.0 and out.loc[1].tolist() == [31.0, 6.0, 34.0]


def test_split_health_and_baseline_keys(registry: Registry) -> None:
    h = StationHealth("st-1", ctx(registry))
    _, _, timer = h.process([Row(T0, {"temperature": 10.0})], now_ms=T0)
    [event] = h.on_timer(timer)
    pdf = pd.DataFrame({"station_id": ["st-1", "st-1"], "reason": [None, None],
                        "health_event": [None, event.to_json().decode()]})
    rest, events = split_health(pdf)
    assert len(rest) == 1 and [e.event_id for e in events] == [event.event_id]


def test_sink_helpers_on_the_operator_columns() -> None:
    from citysense_scorer.health_wiring import exclude_faulty, health_columns, judge_outliers

    good = pd.DataFrame({  # as the health operator's rows reach the sink (see health_spark.attach_health)
        "station_id": ["a", "a", "b", "c"],
        "pm2_5": [900.0, 40.0, 30.0, 20.0],
        "temperature": [20.0, 20.0, 21.0, 22.0],
        "heat_index": [20.5, 20.5, 21.5, 22.5],
        "outliers": [["pm2_5"], ["pm2_5"], ["pm2_5"], None],
        "fault_temperature": [True, False, False, False],
        "fault_pm2_5": [True, False, False, False],
        "z_station:temperature": [np.nan, np.nan, -0.5, np.nan],
        "z_station:pm2_5": [np.nan, 1.2, 9.0, np.nan],
    })
    judged = judge_outliers(good, 3.72)
    # faulty: a fault, not an outlier; usual for the station: not an outlier; unusual for both: outlier
    assert [None if o is None else list(o) for o in judged["outliers"]] == [[], [], ["pm2_5"], None]
    frame = exclude_faulty(good[["station_id", "pm2_5", "temperature", "heat_index"]], good)
    assert np.isnan(frame.loc[0, "pm2_5"]) and np.isnan(frame.loc[0, "heat_index"])
    assert frame.loc[1, "pm2_5"] == 40.0 and frame.loc[1, "temperature"] == 20.0
    assert health_columns(good) == [["pm2_5", "temperature"], [], [], []]


def test_wiring_is_a_no_op_without_health_columns() -> None:
    from citysense_scorer.health_wiring import exclude_faulty, health_columns, judge_outliers, split_health

    plain = pd.DataFrame({"station_id": ["a"], "reason": [None], "pm2_5": [5.0], "outliers": [[]]})
    assert split_health(plain)[0] is plain and judge_outliers(plain, 3.72) is plain
    assert exclude_faulty(plain, plain) is plain and health_columns(plain) is None


def test_bucket_matches_per_station_health_across_state_round_trips(registry: Registry) -> None:
    rows = sequence()
    other = [Row(r.ts_ms, {"temperature": r.values["temperature"] + 1}, 52.6, 13.5) for r in rows]
    alone_a, alone_b = StationHealth("st-a", ctx(registry)), StationHealth("st-b", ctx(registry))
    want_a, ev_a, _ = alone_a.process(rows, now_ms=T0)
    want_b, ev_b, _ = alone_b.process(other, now_ms=T0)
    bucket = HealthBucket(ctx(registry))
    got, events = bucket.process({"st-a": rows[:55], "st-b": other[:30]}, now_ms=T0)
    resumed = HealthBucket(ctx(registry), bucket.dump_json())
    got2, events2 = resumed.process({"st-a": rows[55:], "st-b": other[30:]}, now_ms=T0)
    assert [(r.faults, r.baseline_z) for r in got["st-a"] + got2["st-a"]] == [(r.faults, r.baseline_z) for r in want_a]
    assert [(r.faults, r.baseline_z) for r in got["st-b"] + got2["st-b"]] == [(r.faults, r.baseline_z) for r in want_b]
    assert sorted(e.event_id for e in events + events2) == sorted(e.event_id for e in ev_a + ev_b)


def test_bucket_opens_offline_for_a_silent_station_while_its_neighbour_sends(registry: Registry) -> None:
    c = HealthContext(metrics=dict(registry.metrics), profile="city", offline=OfflineConfig(default_s=60))
    bucket = HealthBucket(c)
    bucket.process({"quiet": [Row(T0, {"temperature": 10.0})], "busy": [Row(T0, {"temperature": 11.0})]}, T0)
    assert bucket.next_timer() == T0 + 60_000
    _, events = bucket.process({"busy": [Row(T0 + 59_999, {"temperature": 11.1})]}, T0 + 59_999)
    assert events == []  # one millisecond short of offline_after
    _, events = bucket.process({"busy": [Row(T0 + 60_000, {"temperature": 11.2})]}, T0 + 60_000)
    assert [(e.station_id, e.kind, e.state) for e in events] == [("quiet", AlertKind.STATION_OFFLINE, AlertState.OPEN)]
    assert bucket.next_timer() == T0 + 120_000  # only busy's deadline is left: quiet is already offline
    assert HealthBucket(c, bucket.dump_json()).expire(T0 + 120_000)[0].station_id == "busy"
    _, events = bucket.process({"quiet": [Row(T0 + 70_000, {"temperature": 10.2})]}, T0 + 70_000)
    assert [(e.station_id, e.state) for e in events] == [("quiet", AlertState.RESOLVED)]


def test_bucket_written_under_another_bucket_count_is_dropped(registry: Registry) -> None:
    c = HealthContext(metrics=dict(registry.metrics), profile="city", buckets=32)
    bucket = HealthBucket(c)
    bucket.process({"st-1": [Row(T0, {"temperature": 10.0})]}, T0)
    assert HealthBucket(c, bucket.dump_json()).stations.keys() == {"st-1"}
    moved = HealthBucket(HealthContext(metrics=dict(registry.metrics), profile="city", buckets=64), bucket.dump_json())
    assert moved.stations == {} and moved.next_timer() is None  # st-1 now hashes elsewhere: no stale offline alert


def test_a_bucket_kept_between_batches_matches_one_reloaded_each_batch(registry: Registry) -> None:
    """The worker keeps its bucket objects between micro-batches (health_spark); reusing them must give exactly what
    reading the stored document each batch gives: verdicts, events, offline alerts and the document itself."""
    rows = sequence()
    other = [Row(r.ts_ms, {"temperature": r.values["temperature"] + 1}, 52.6, 13.5) for r in rows]
    kept, text, events = HealthBucket(ctx(registry)), None, []
    for start in range(0, len(rows), 7):
        batch = {"st-a": rows[start:start + 7]}
        if start < 50:  # st-b falls silent after 50 readings
            batch["st-b"] = other[start:start + 7]
        now = rows[start].ts_ms + 500
        reloaded_bucket = HealthBucket(ctx(registry), text)
        want, want_events = reloaded_bucket.process(batch, now)
        got, got_events = kept.process(batch, now)
        assert got == want
        assert [e.event_id for e in got_events] == [e.event_id for e in want_events]
        events += got_events
        text = reloaded_bucket.dump_json()
        assert kept.dump_json() == text
    assert {(e.kind, e.state) for e in events} == {(AlertKind.SENSOR_FAULT, AlertState.OPEN)}  # st-a's flatline
    later = rows[-1].ts_ms + 61_000
    timers = HealthBucket(ctx(registry), text).expire(later)
    assert [e.event_id for e in kept.expire(later)] == [e.event_id for e in timers]
    assert {(e.station_id, e.kind) for e in timers} == {("st-a", AlertKind.STATION_OFFLINE),
                                                       ("st-b", AlertKind.STATION_OFFLINE)}
