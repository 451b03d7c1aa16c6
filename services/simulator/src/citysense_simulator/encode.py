"""Fast contract-v1 JSON for a whole tick: one %-format per station from a precomputed template.

Building a pydantic model per reading costs ~20 µs; this costs ~2 µs, which is what lets one core simulate
hundreds of thousands of station-readings per second. A test checks every line against the contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import numpy as np
from citysense_common.contract import format_ts

from citysense_simulator.stations import Station


class TickEncoder:
    def __init__(self, stations: list[Station], metric_names: list[str], decimals: int = 3) -> None:
        self.keys = [s.station_id.encode() for s in stations]
        metrics = ",".join(f"{json.dumps(name)}:%.{decimals}f" for name in metric_names)
        # %% survives the first formatting pass; station-constant parts are baked in once.
        self.templates = [
            f'{{"schema_version":1,"station_id":{json.dumps(s.station_id)},"ts":"%s","seq":%d,'
            f'"location":{{"lat":{s.lat},"lon":{s.lon}}},"metrics":{{{metrics}}}}}'
            for s in stations
        ]

    def encode(self, ts: datetime, seqs: np.ndarray, values: np.ndarray,
               sending: np.ndarray | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Yield (key, value) for each sending station."""
        stamp = format_ts(ts)
        rows = values.tolist()
        seq_list = seqs.tolist()
        templates, keys = self.templates, self.keys
        indices = range(len(rows)) if sending is None else np.flatnonzero(sending).tolist()
        for i in indices:
            yield keys[i], (templates[i] % (stamp, seq_list[i], *rows[i])).encode()
