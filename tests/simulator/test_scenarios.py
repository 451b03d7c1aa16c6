"""Scenarios change exactly the stations and metrics they name, on schedule."""

from __future__ import annotations

import numpy as np
import pytest
from citysense_simulator.scenarios import ScenarioError, apply, parse_scenario

NAMES = ["temperature", "humidity", "pm2_5", "pm10", "noise_level"]
LO = np.array([-50, 0, 0, 0, 0], dtype=float)
HI = np.array([60, 100, 1000, 1000, 140], dtype=float)
SIGMA = np.array([2, 3, 2, 8, 3], dtype=float)


def base(stations: int = 4) -> np.ndarray:
    return np.tile(np.array([20.0, 50.0, 10.0, 15.0, 55.0]), (stations, 1))


def run(spec: str, elapsed: float, values: np.ndarray | None = None, seed: int = 0):
    values = base() if values is None else values
    scenario = parse_scenario(spec, values.shape[0])
    sending = apply([scenario], values, NAMES, elapsed, LO, HI, SIGMA, np.random.default_rng(seed))
    return values, sending


def test_pollution_ramps_pm_at_chosen_stations_only() -> None:
    values, sending = run("pollution:stations=0+2,ramp=100,peak=300", elapsed=50)
    assert values[0, 2] == pytest.approx(10 + 150)
    assert values[0, 3] == pytest.approx(15 + 210)  # PM10 rises 1.4x, so PM2.5 never exceeds PM10
    assert values[1, 2] == 10.0 and values[3, 2] == 10.0
    assert sending.all()


def test_pollution_holds_then_falls_back() -> None:
    assert run("pollution:stations=1,ramp=10,peak=300,hold=20", elapsed=25)[0][0, 2] == pytest.approx(310)
    assert run("pollution:stations=1,ramp=10,peak=300,hold=20", elapsed=35)[0][0, 2] == pytest.approx(160)
    assert run("pollution:stations=1,ramp=10,peak=300,hold=20", elapsed=45)[0][0, 2] == pytest.approx(10)


def test_scenario_waits_for_its_start() -> None:
    values, _ = run("pollution:stations=4,start=60", elapsed=59)
    assert (values == base()).all()


def test_heatwave_raises_temperature() -> None:
    values, _ = run("heatwave:stations=4,ramp=0,delta=15", elapsed=1)
    assert (values[:, 0] == 35.0).all()
    assert (values[:, 1] == 50.0).all()


def test_flatline_freezes_the_first_value_seen() -> None:
    scenario = parse_scenario("flatline:stations=1,metric=temperature", 2)
    rng = np.random.default_rng(0)
    first = base(2)
    first[0, 0] = 21.5
    apply([scenario], first, NAMES, 0, LO, HI, SIGMA, rng)
    later = base(2)
    later[:, 0] = 30.0
    apply([scenario], later, NAMES, 5, LO, HI, SIGMA, rng)
    assert later[0, 0] == 21.5 and later[1, 0] == 30.0


@pytest.mark.parametrize(("at", "expected"), [("max", 100.0), ("min", 0.0)])
def test_stuck_at_range_limit(at: str, expected: float) -> None:
    values, _ = run(f"stuck:stations=2,metric=humidity,at={at}", elapsed=0)
    assert (values[:2, 1] == expected).all() and (values[2:, 1] == 50.0).all()


def test_spikes_jump_by_size_sigma() -> None:
    values, _ = run("spikes:stations=4,metric=noise_level,probability=1,size=10", elapsed=0)
    assert (values[:, 4] == 55.0 + 30.0).all()


def test_dropout_silences_stations_for_a_while() -> None:
    _, during = run("dropout:stations=0+3,start=10,duration=30", elapsed=20)
    _, after = run("dropout:stations=0+3,start=10,duration=30", elapsed=41)
    assert during.tolist() == [False, True, True, False]
    assert after.all()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("volcano", "unknown scenario 'volcano'"),
        ("pollution:peak", "expected key=value"),
        ("pollution:colour=red", "unknown option 'colour'"),
        ("pollution:peak=lots", "peak must be a number"),
        ("pollution:stations=a+b", "stations must be a count"),
        ("pollution:stations=0+9", "out of range"),
        ("flatline:metric=co2", "metric 'co2' is not simulated"),
        ("stuck:at=middle", "at must be 'max' or 'min'"),
    ],
)
def test_bad_specs_are_explained(spec: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        run(spec, elapsed=0)
