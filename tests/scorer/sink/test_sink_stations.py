"""The station rows the sink upserts per micro-batch (sink._stations): each station's newest reading."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from citysense_common.store.base import StationRecord
from citysense_scorer.sink.micro_batch import _stations

T0 = 1_800_000_000_000
NAMES = ["pm2_5", "pm10"]


def test_each_station_keeps_its_newest_reading_by_event_time_then_seq() -> None:
    good = pd.DataFrame({
        "station_id": ["b", "a", "a", "b", "a"],
        "ts_ms": [T0 + 2000, T0 + 1000, T0 + 3000, T0 + 2000, T0 + 3000],
        "seq": [7, 1, 4, 6, 3],
        "lat": [1.0, 2.0, np.nan, 3.0, 4.0], "lon": [1.0, 2.0, np.nan, 3.0, 4.0],
        "pm2_5": [10.0, 11.0, 12.0, 13.0, 14.0], "pm10": [20.0, np.nan, np.nan, 23.0, 24.0],
    })
    assert _stations(good, NAMES) == [
        # a: T0+3000 twice, seq 4 beats seq 3; its pm10 and location are missing, not NaN
        StationRecord(station_id="a", last_seen=datetime.fromtimestamp((T0 + 3000) / 1000, tz=UTC), last_seq=4,
                      latest={"pm2_5": 12.0}, lat=None, lon=None),
        StationRecord(station_id="b", last_seen=datetime.fromtimestamp((T0 + 2000) / 1000, tz=UTC), last_seq=7,
                      latest={"pm2_5": 10.0, "pm10": 20.0}, lat=1.0, lon=1.0),
    ]


def test_no_readings_no_stations() -> None:
    empty = pd.DataFrame({c: [] for c in ["station_id", "ts_ms", "seq", "lat", "lon", *NAMES]})
    assert _stations(empty, NAMES) == []
