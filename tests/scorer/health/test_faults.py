"""Sensor-fault detectors on hand-built sequences, including the sequences that must not fire."""

from __future__ import annotations

import numpy as np
import pytest
from citysense_common.contract import AlertKind, AlertState
from citysense_common.registry import Registry
from citysense_scorer.health.baselines import BaselineConfig
from citysense_scorer.health.faults import FaultConfig, FaultDetector, suspicious_limits

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def detector(registry: Registry, **cfg: object) -> FaultDetector:
    return FaultDetector("st-1", dict(registry.metrics), "city", FaultConfig(**cfg),  # type: ignore[arg-type]
                         BaselineConfig(half_life=600, warmup=60))


def feed(det: FaultDetector, seq: list[dict[str, float]]) -> tuple[list[set[str]], list]:
    flags, events = [], []
    for i, values in enumerate(seq):
        v = det.observe(T0 + i * 1000, values)
        flags.append(v.faults)
        events.extend(v.events)
    return flags, events


def noisy(rng: np.random.Generator, mean: float, std: float, n: int) -> list[float]:
    return [round(float(x), 1) for x in rng.normal(mean, std, n)]


def test_flatline_raises_one_alert_flags_readings_and_resolves(registry: Registry) -> None:
    det = detector(registry)
    rng = np.random.default_rng(3)
    seq = [{"temperature": t} for t in noisy(rng, 12, 1, 20)] + [{"temperature": 21.5}] * 40
    seq += [{"temperature": t} for t in noisy(rng, 12, 1, 5)]
    flags, events = feed(det, seq)
    opens = [e for e in events if e.state is AlertState.OPEN]
    assert len(opens) == 1 and opens[0].kind is AlertKind.SENSOR_FAULT
    assert opens[0].rule_id == "fault-flatline.temperature" and opens[0].metric == "temperature"
    first_flagged = next(i for i, f in enumerate(flags) if "temperature" in f)
    assert first_flagged == 20 + 29  # the 30th identical reading
    assert all("temperature" in f for f in flags[49:60])
    resolved = [e for e in events if e.state is AlertState.RESOLVED]
    assert len(resolved) == 1 and resolved[0].alert_id == opens[0].alert_id
    assert resolved[0].event_id != opens[0].event_id


def test_pollution_episode_is_not_a_flatline_nor_a_spike(registry: Registry) -> None:
    det = detector(registry)
    rng = np.random.default_rng(4)
    base = noisy(rng, 10, 2, 120)
    ramp = [10 + i * 0.8 + float(rng.normal(0, 1.5)) for i in range(300)]  # slow rise to ~250 over 5 minutes
    plateau = noisy(rng, 250, 8, 200)
    flags, events = feed(det, [{"pm2_5": max(0.0, v)} for v in base + ramp + plateau])
    assert events == []
    assert not any(flags)


def test_rain_at_zero_is_not_a_flatline(registry: Registry) -> None:
    det = detector(registry)
    flags, events = feed(det, [{"rainfall": 0.0}] * 200)
    assert events == [] and not any(flags)


def test_natural_limits_are_not_stuck(registry: Registry) -> None:
    # 0 lx at night, calm air and saturated humidity are real; only implausible limits count.
    assert 0.0 not in suspicious_limits(registry.metrics["illuminance"], "city", 4.0)
    assert suspicious_limits(registry.metrics["humidity"], "city", 4.0) == (0.0,)  # 100 % is fog, 0 % is broken
    assert suspicious_limits(registry.metrics["noise_level"], "city", 4.0) == (0.0, 140.0)
    det = detector(registry, flatline_n=1000)
    rng = np.random.default_rng(5)
    seq = [{"illuminance": 0.0, "humidity": 100.0, "wind_speed": 0.0, "noise_level": v} for v in noisy(rng, 60, 5, 50)]
    flags, events = feed(det, seq)
    assert events == [] and not any(flags)


def test_stuck_at_range_limit(registry: Registry) -> None:
    det = detector(registry, flatline_n=1000)  # isolate the stuck detector from the flatline one
    rng = np.random.default_rng(6)
    seq = [{"noise_level": v} for v in noisy(rng, 60, 5, 10)] + [{"noise_level": 0.0}] * 8
    seq += [{"noise_level": v} for v in noisy(rng, 60, 5, 5)]
    flags, events = feed(det, seq)
    assert [(e.state, e.rule_id) for e in events] == [
        (AlertState.OPEN, "fault-stuck.noise_level"), (AlertState.RESOLVED, "fault-stuck.noise_level")]
    # the drop and the recovery are large jumps (tentatively excluded); stuck from the 5th reading at the limit
    assert [i for i, f in enumerate(flags) if f] == [10, 14, 15, 16, 17, 18]


def test_spike_that_returns_is_a_fault_and_excluded(registry: Registry) -> None:
    det = detector(registry)
    rng = np.random.default_rng(7)
    before = noisy(rng, 10, 1, 100)
    seq = [{"pm2_5": v} for v in before] + [{"pm2_5": 900.0}] + [{"pm2_5": v} for v in noisy(rng, 10, 1, 70)]
    flags, events = feed(det, seq)
    assert flags[100] == {"pm2_5"}  # the spike never feeds aggregates
    assert not any(flags[:100]) and not any(flags[101:])
    assert [(e.state, e.rule_id) for e in events] == [
        (AlertState.OPEN, "fault-spike.pm2_5"), (AlertState.RESOLVED, "fault-spike.pm2_5")]
    assert events[0].value == 900.0 and "spiked" in events[0].message


def test_step_that_stays_is_not_a_spike(registry: Registry) -> None:
    det = detector(registry)
    rng = np.random.default_rng(8)
    seq = [{"pm2_5": v} for v in noisy(rng, 10, 1, 100)] + [{"pm2_5": v} for v in noisy(rng, 400, 5, 50)]
    flags, events = feed(det, seq)
    assert events == []
    assert [i for i, f in enumerate(flags) if f] == [100]  # only the jump itself, tentatively


def test_pm25_above_pm10(registry: Registry) -> None:
    det = detector(registry)
    ok = [{"pm2_5": 12.0 + i % 3, "pm10": 20.0 + i % 4} for i in range(10)]
    noise = [{"pm2_5": 20.5, "pm10": 20.0}]  # within sensor tolerance
    bad = [{"pm2_5": 40.0 + i, "pm10": 20.0 + i % 2} for i in range(5)]
    flags, events = feed(det, ok + noise + bad + ok[:10])
    assert not any(flags[:11])
    assert all(f == {"pm2_5", "pm10"} for f in flags[11:16])
    assert [(e.state, e.rule_id) for e in events] == [
        (AlertState.OPEN, "fault-pm-order.pm2_5"), (AlertState.RESOLVED, "fault-pm-order.pm2_5")]
    assert "physically impossible" in events[0].message


def test_ids_are_deterministic(registry: Registry) -> None:
    seq = [{"temperature": 5.0}] * 35
    _, a = feed(detector(registry), seq)
    _, b = feed(detector(registry), seq)
    assert [e.event_id for e in a] == [e.event_id for e in b] and a


@pytest.mark.parametrize("metric", ["temperature", "pm2_5"])
def test_faulty_values_do_not_teach_the_baseline(registry: Registry, metric: str) -> None:
    det = detector(registry)
    feed(det, [{metric: 5.0 + (i % 7) * 0.3} for i in range(100)])
    mean_before = det.tracks[metric].baseline.mean
    det.observe(T0 + 200_000, {metric: 500.0})  # jump: flagged, not learned
    assert det.tracks[metric].baseline.mean == mean_before
