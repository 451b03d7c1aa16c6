"""Station health composite: state survives a JSON round trip mid-sequence; sink helpers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson
import pandas as pd
from citysense_common.contract import AlertKind, AlertState
from citysense_common.registry import Registry
from citysense_scorer.health.baselines import BaselineConfig
from citysense_scorer.health.bucket import HealthBucket, HealthContext, Row, StationHealth
from citysense_scorer.health.faults import MetricTrack
from citysense_scorer.health.forecast import ForecastTarget
from citysense_scorer.health.offline import OfflineConfig
from citysense_scorer.sink.health import mask_faulty, split_health

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
    """Through the station's document as text (a bucket's document, which keeps the numbers in its track table, is
    covered by the bucket tests below)."""
    return StationHealth.from_doc(health.station_id, ctx(registry), orjson.loads(health.to_json()))


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
    from citysense_scorer.sink.health import exclude_faulty, health_columns, judge_outliers

    good = pd.DataFrame({  # as the health operator's rows reach the sink (see health.spark.attach_health)
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
    from citysense_scorer.sink.health import exclude_faulty, health_columns, judge_outliers, split_health

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


# -- the forecast history in columns beside the bucket document (forecast_history) ----------------------------------

PM_TARGET = ForecastTarget("pm25-eu-24h", "pm2_5", 86_400_000, 25.0, unit="µg/m³")


def forecast_ctx(registry: Registry) -> HealthContext:
    metrics = {m: registry.metrics[m] for m in ("temperature", "pm2_5", "pm10")}
    return HealthContext(metrics=metrics, profile="city", baseline=BaselineConfig(warmup=20), targets=(PM_TARGET,))


class StoredState:
    """What the state store keeps of one bucket: the document and the forecast history's entries."""

    def __init__(self) -> None:
        self.text: bytes | None = None
        self.entries: dict[int, str] = {}
        self.written: list[list[int]] = []  # the entries each save wrote

    def load(self, c: HealthContext) -> HealthBucket:
        return HealthBucket(c, self.text, sorted(self.entries.items()))

    def save(self, bucket: HealthBucket) -> None:
        self.text = bucket.dump_json()
        puts, gone = bucket.history_changes()
        self.entries.update(puts)
        for b in gone:
            del self.entries[b]
        self.written.append(sorted(puts))


def ramp_day(station: str, lag_min: int, seed: int, where: tuple[float, float] = (52.5, 13.4),
             located: int | None = None) -> list[Row]:
    """A reading a minute for 24 h of clean air, then PM2.5 rising ~3 µg/m³ an hour: a forecast opens, then the
    24-h mean passes 25 and it resolves as forecast. ``lag_min`` shifts the station's clock back; the readings
    after the first ``located`` carry no location (None: all carry ``where``)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(24 * 60 + 16 * 60):
        pm = 12 + max(0, i - 24 * 60) * 0.05 + rng.normal(0, 1.5)
        lat, lon = where if located is None or i < located else (None, None)
        out.append(Row(T0 + (i - lag_min) * 60_000, {"temperature": 10 + rng.normal(0, 1), "pm2_5": max(0.5, pm),
                                                      "pm10": max(0.5, pm) * 1.8 + 3}, lat, lon))
    return out


def test_forecasts_from_the_bucket_columns_match_each_station_on_its_own(registry: Registry) -> None:
    """Stations of one bucket forecast from the shared columns, the bucket re-read from the stored state every
    batch: the same events as each station with its own series (StationHealth, the reference), to the message."""
    c = forecast_ctx(registry)
    # st-c stops sending its location after the first hour: its forecasts carry the last one it sent
    stations = {"st-a": ramp_day("st-a", 0, 1), "st-b": ramp_day("st-b", 30, 2, (52.6, 13.3)),
                "st-c": ramp_day("st-c", 5, 3, (52.4, 13.5), located=60)}
    want = []
    for station, rows in stations.items():
        alone = StationHealth(station, c)
        for start in range(0, len(rows), 10):
            want += alone.process(rows[start:start + 10], now_ms=rows[start].ts_ms)[1]
    store, kept, got = StoredState(), HealthBucket(c), []
    for start in range(0, len(stations["st-a"]), 10):
        batch = {s: rows[start:start + 10] for s, rows in stations.items()}
        now = T0 + start * 60_000
        reread = store.load(c)
        _, events = reread.process(batch, now)
        got += events
        kept_events = kept.process(batch, now)[1]
        assert [e.to_json() for e in kept_events] == [e.to_json() for e in events]
        store.save(reread)
        kept.history_changes()
        assert kept.dump_json() == store.text
    forecasts = [e for e in want if e.kind is AlertKind.FORECAST]
    assert {(e.station_id, e.state) for e in forecasts} == {(s, st) for s in stations
                                                             for st in (AlertState.OPEN, AlertState.RESOLVED)}
    assert "reached" in forecasts[-1].message  # came true
    where = {"st-a": (52.5, 13.4), "st-b": (52.6, 13.3), "st-c": (52.4, 13.5)}
    for event in (e for e in got + want if e.kind is AlertKind.FORECAST):  # on the map, in bbox queries
        assert event.location is not None and (event.location.lat, event.location.lon) == where[event.station_id]
    key = lambda e: (e.station_id, e.event_id)  # noqa: E731
    assert [e.to_json() for e in sorted(got, key=key)] == [e.to_json() for e in sorted(want, key=key)]


def test_the_stored_document_does_not_grow_with_uptime(registry: Registry) -> None:
    """Each micro-batch writes the document plus the forecast buckets it touched; the closed buckets stay as they
    were written and those past the longest window (plus an hour's slack) are deleted."""
    c = forecast_ctx(registry)
    stations = [f"st-{i}" for i in range(50)]
    store, sizes, bucket = StoredState(), {}, HealthBucket(c)
    for minute in range(27 * 60):
        now = T0 + minute * 60_000
        if minute % 97 == 0:  # re-read now and then, kept otherwise
            bucket = store.load(c)
        bucket.process({s: [Row(now, {"pm2_5": 10.0 + (i + minute) % 7, "temperature": 12.0 + i % 3})]
                        for i, s in enumerate(stations)}, now)
        store.save(bucket)
        sizes[minute] = len(store.text)
    assert sizes[27 * 60 - 1] < 1.05 * sizes[60]  # a day later the document is the size it was after an hour
    assert all(len(w) <= 1 for w in store.written[1:])  # one bucket per batch: the current one
    assert len(store.entries) == 288 + 2 + 12
    assert min(store.entries) == (T0 + (27 * 60 - 1) * 60_000) // 300_000 - 288 - 2 - 12 + 1


def test_a_document_with_series_inside_moves_them_to_the_columns(registry: Registry) -> None:
    """Documents written before the history had columns carry each station's series; the bucket reading one
    forecasts exactly as before and writes every bucket of those series on its first save."""
    c = forecast_ctx(registry)
    rows = ramp_day("st-a", 0, 4)
    split = 24 * 60 + 5 * 60
    before = StationHealth("st-a", c)
    for start in range(0, split, 10):
        before.process(rows[start:start + 10], now_ms=rows[start].ts_ms)
    old_layout = orjson.dumps({"buckets": c.buckets, "stations": {"st-a": before.to_doc()}})
    assert b'"series"' in old_layout
    bucket, store = HealthBucket(c, old_layout), StoredState()
    store.save(bucket)
    assert len(store.written[0]) == len(before.forecaster.series["pm2_5"].data) == 290  # its whole series
    assert b'"series"' not in store.text
    reference, got, want = StationHealth.from_doc("st-a", c, orjson.loads(orjson.dumps(before.to_doc()))), [], []
    for start in range(split, len(rows), 10):
        want += reference.process(rows[start:start + 10], now_ms=rows[start].ts_ms)[1]
        bucket = store.load(c)
        got += bucket.process({"st-a": rows[start:start + 10]}, rows[start].ts_ms)[1]
        store.save(bucket)
    assert [e.to_json() for e in got] == [e.to_json() for e in want]
    assert {e.state for e in got if e.kind is AlertKind.FORECAST} == {AlertState.OPEN, AlertState.RESOLVED}


def stored_under_another_bucket_count(registry: Registry) -> tuple[StoredState, HealthContext]:
    """A state with one station's history, and a context with twice the buckets (its document is dropped)."""
    c = forecast_ctx(registry)
    store = StoredState()
    bucket = store.load(c)
    bucket.process({"st-1": [Row(T0, {"pm2_5": 10.0})]}, T0)
    store.save(bucket)
    assert list(store.entries) == [T0 // 300_000]
    return store, HealthContext(metrics=c.metrics, profile="city", targets=c.targets, buckets=c.buckets * 2)


def test_history_of_a_bucket_written_under_another_bucket_count_is_deleted(registry: Registry) -> None:
    store, other = stored_under_another_bucket_count(registry)
    moved = store.load(other)
    assert moved.stations == {}
    store.save(moved)
    assert store.entries == {}


def test_history_dropped_with_its_document_is_rewritten_where_new_readings_fall(registry: Registry) -> None:
    store, other = stored_under_another_bucket_count(registry)
    moved = store.load(other)
    moved.process({"st-2": [Row(T0 + 1000, {"pm2_5": 12.0})]}, T0 + 1000)
    store.save(moved)
    assert list(store.entries) == [T0 // 300_000]  # the same 5-minute bucket: overwritten, not deleted
    reread = store.load(other)
    assert reread.history.slots == ["st-2"]
    sums, counts = reread.history.window("pm2_5", np.array([0]))(T0 // 300_000, T0 // 300_000)
    assert (sums.tolist(), counts.tolist()) == ([[12.0]], [[1.0]])


def reference_doc(health: StationHealth) -> dict:
    """The station document's layout written out field by field (as the scorer built it before to_json)."""
    def track_doc(track: MetricTrack) -> dict:
        doc = dict(vars(track))
        doc["baseline"] = dict(vars(track.baseline))
        doc["open"] = {fault: dict(vars(o)) for fault, o in track.open.items()}
        return doc

    doc = {"tracks": {name: track_doc(t) for name, t in health.faults.tracks.items()},
           "pm_run": health.faults.pm_run, "offline": dict(vars(health.offline.state))}
    if health.forecaster is not None:
        doc["forecast"] = {"open": {r: dict(vars(o)) for r, o in health.forecaster.open.items()},
                           "last_eval_bucket": health.forecaster.last_eval_bucket}
        if health.forecaster.series:
            doc["forecast"]["series"] = {m: {str(b): c for b, c in s.data.items()}
                                         for m, s in health.forecaster.series.items()}
    return doc


def test_the_station_json_is_the_documents_layout_in_every_state(registry: Registry) -> None:
    """to_json (what a bucket writes each micro-batch) must give exactly the bytes of the document's field-by-field
    layout, which stored states of earlier versions have: fresh, warming up, a fault open, NaN pending values, an
    offline alert open; with forecast series and without a forecaster."""
    rows = sequence()
    for context in (ctx(registry), replace(ctx(registry), targets=())):
        health = StationHealth("st-1", context)
        states = [health.to_json()]
        assert states[0] == orjson.dumps(reference_doc(health))
        for a, b in ((0, 10), (10, 55), (55, 70), (70, 100)):
            _, _, timer = health.process(rows[a:b], now_ms=T0 + b * 1000)
            assert health.to_json() == orjson.dumps(reference_doc(health))
            states.append(health.to_json())
        assert any(t.open for t in health.faults.tracks.values())  # the temperature fault opened on the way
        [offline] = health.on_timer(timer)
        assert offline.kind is AlertKind.STATION_OFFLINE and health.offline.state.alert_id is not None
        assert health.to_json() == orjson.dumps(reference_doc(health))
        assert health.to_doc() == orjson.loads(orjson.dumps(reference_doc(health)))
        assert len(set(states)) == len(states)  # each step changed the state that was compared
        assert (b'"series"' in states[-1]) is bool(context.targets)


def test_station_ends_give_each_stations_newest_time_and_last_located_row() -> None:
    import pytest
    from citysense_scorer.health.bucket import BatchColumns, _station_ends

    nan = np.nan
    batch = BatchColumns(stations=["a", "b", "c"], starts=np.array([0, 3, 4]), ends=np.array([3, 4, 6]),
                         ts_ms=np.array([10, 30, 20, 5, 7, 9]), values=np.zeros((6, 1)), names=["x"],
                         lat=np.array([1.0, nan, 2.0, nan, 3.0, nan]), lon=np.zeros(6))
    newest, located = _station_ends(batch)
    assert newest.tolist() == [30, 5, 9]  # the newest, not the last row's time (a is out of order)
    assert located.tolist() == [2, -1, 4]  # b never sent a location
    with pytest.raises(ValueError, match="contiguous"):
        _station_ends(BatchColumns(stations=["a", "b"], starts=np.array([0, 3]), ends=np.array([2, 4]),
                                   ts_ms=np.arange(4), values=np.zeros((4, 1)), names=["x"], lat=np.zeros(4),
                                   lon=np.zeros(4)))
    empty = BatchColumns(stations=[], starts=np.array([], np.int64), ends=np.array([], np.int64),
                         ts_ms=np.array([], np.int64), values=np.zeros((0, 1)), names=["x"], lat=np.zeros(0),
                         lon=np.zeros(0))
    assert [a.tolist() for a in _station_ends(empty)] == [[], []]
