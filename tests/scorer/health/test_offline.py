"""Offline detection with an injected processing-time clock: boundaries, resolve, groups, determinism."""

from __future__ import annotations

from citysense_common.contract import AlertKind, AlertState
from citysense_scorer.health.offline import OfflineConfig, OfflineTracker

T0 = 1_767_225_600_000


def test_opens_exactly_at_offline_after_not_before() -> None:
    tr = OfflineTracker("st-1", 60_000)
    events, timer = tr.on_readings(now_ms=T0, newest_event_ms=T0 - 200)
    assert events == [] and timer == T0 + 60_000
    assert tr.on_timer(T0 + 59_999) == []  # one millisecond early: still online
    opened = tr.on_timer(T0 + 60_000)
    assert len(opened) == 1
    ev = opened[0]
    assert ev.kind is AlertKind.STATION_OFFLINE and ev.state is AlertState.OPEN and ev.severity.value == "warning"
    assert ev.rule_id == "station-offline" and ev.window == "60s"
    assert tr.on_timer(T0 + 120_000) == []  # one alert per silence, not one per timer


def test_first_reading_after_silence_resolves() -> None:
    tr = OfflineTracker("st-1", 60_000)
    tr.on_readings(T0, T0)
    [opened] = tr.on_timer(T0 + 61_000)
    resolved, timer = tr.on_readings(T0 + 300_000, T0 + 299_500)
    assert [e.state for e in resolved] == [AlertState.RESOLVED]
    assert resolved[0].alert_id == opened.alert_id and resolved[0].event_id != opened.event_id
    assert resolved[0].resolved_at is not None and timer == T0 + 360_000
    assert tr.on_readings(T0 + 301_000, T0 + 300_500)[0] == []  # nothing left to resolve


def test_readings_before_the_deadline_keep_the_station_online() -> None:
    tr = OfflineTracker("st-1", 60_000)
    for i in range(10):
        tr.on_readings(T0 + i * 59_000, T0 + i * 59_000)
        assert tr.on_timer(T0 + i * 59_000 + 58_999) == []
    # a stale timer from an earlier arrival must not open the alert early
    assert tr.on_timer(T0 + 9 * 59_000 + 1) == []


def test_never_seen_station_is_not_offline() -> None:
    assert OfflineTracker("st-x", 60_000).on_timer(T0) == []


def test_ids_derive_from_event_time_so_replays_match() -> None:
    a, b = OfflineTracker("st-1", 60_000), OfflineTracker("st-1", 60_000)
    a.on_readings(T0, T0)
    b.on_readings(T0 + 5_000, T0)  # same data, processed 5 s later (replay)
    [ea], [eb] = a.on_timer(T0 + 70_000), b.on_timer(T0 + 90_000)
    assert ea.alert_id == eb.alert_id and ea.event_id == eb.event_id and ea.opened_at == eb.opened_at


def test_station_groups_pick_offline_after() -> None:
    cfg = OfflineConfig(default_s=60, groups=(("lora-*", 900), ("st-slow-?", 300)))
    assert cfg.after_ms("lora-17") == 900_000
    assert cfg.after_ms("st-slow-1") == 300_000
    assert cfg.after_ms("st-1") == 60_000
