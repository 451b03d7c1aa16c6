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
