"""The fast encoder emits exactly the contract: every line parses with the reference validator and schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
from citysense_common.contract import parse_reading
from citysense_simulator.encode import TickEncoder
from citysense_simulator.stations import make_stations

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "contracts/reading.v1.schema.json").read_text("utf-8"))


def test_every_encoded_reading_satisfies_the_contract() -> None:
    stations = make_stations(50, "7")
    names = ["temperature", "pm2_5", "rainfall"]
    values = np.random.default_rng(0).normal(10, 5, size=(50, 3))
    ts = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
    messages = list(TickEncoder(stations, names).encode(ts, np.arange(50), values))
    assert len(messages) == 50
    for i, (key, raw) in enumerate(messages):
        reading = parse_reading(raw)
        jsonschema.validate(json.loads(raw), SCHEMA)
        assert key.decode() == reading.station_id == stations[i].station_id
        assert reading.seq == i
        assert reading.ts == datetime(2026, 3, 1, 8, 30, 15, 123000, tzinfo=UTC)
        assert reading.location.lat == stations[i].lat
        assert reading.metrics["pm2_5"] == round(values[i, 1], 3)


def test_only_sending_stations_are_encoded() -> None:
    stations = make_stations(4, "0")
    sending = np.array([True, False, True, False])
    messages = list(TickEncoder(stations, ["temperature"]).encode(datetime.now(UTC), np.zeros(4, dtype=int),
                                                                 np.ones((4, 1)), sending))
    assert [key for key, _ in messages] == [stations[0].station_id.encode(), stations[2].station_id.encode()]


def test_fixed_layout_encoder_matches_the_reference_encoder_at_the_range_limits() -> None:
    from citysense_common.registry import load_registry
    from citysense_simulator.encode import FixedLayoutEncoder

    metrics = load_registry().profile_metrics("city")
    names = [m.name for m in metrics]
    lows = np.array([m.range.min for m in metrics])
    highs = np.array([m.range.max for m in metrics])
    rng = np.random.default_rng(4)
    stations = make_stations(300, "3")
    # Values across every magnitude: 0.001 .. 150000, negative ones, and both range limits exactly.
    values = np.clip(rng.normal(0, 50, (300, len(names))) * rng.choice([0.001, 1, 100, 1000], (300, len(names))),
                     lows, highs)
    values[0], values[1], values[2] = lows, highs, -0.0004
    seqs = rng.integers(0, 10**11, 300)
    ts = datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    fast = FixedLayoutEncoder(stations, names, lows, highs).encode(ts, seqs, values)
    reference = list(TickEncoder(stations, names).encode(ts, seqs, values))
    assert [k for k, _ in fast] == [k for k, _ in reference]
    for (_, a), (_, b) in zip(fast, reference, strict=True):
        assert parse_reading(a) == parse_reading(b)
        jsonschema.validate(json.loads(a), SCHEMA)
    sending = np.zeros(300, dtype=bool)
    sending[[5, 9]] = True
    partial = FixedLayoutEncoder(stations, names, lows, highs).encode(ts, seqs, values, sending)
    assert [k for k, _ in partial] == [stations[5].station_id.encode(), stations[9].station_id.encode()]
