"""Many enriched readings as columns: how the scorer hands a micro-batch to a store.

One Python object per reading cost the scorer more than everything else in a micro-batch (~70 µs per reading for
building :class:`EnrichedReading` objects and encoding them one by one). A :class:`ReadingBatch` keeps the batch as
NumPy columns; a backend either writes them column-wise (SQLite) or walks :meth:`ReadingBatch.rows` (Cassandra,
whose driver wants one bound statement per row anyway).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from citysense_common.store.base import EnrichedReading


@dataclass(frozen=True)
class ReadingBatch:
    """``n`` readings. Missing values are NaN in the float columns (a z-score that is NaN is absent from that
    reading: e.g. ``station:<metric>``, the z against the station's own baseline, before it is learned)."""

    station_id: Sequence[str]
    ts_ms: np.ndarray  # int64, event time in ms since the epoch (UTC)
    seq: np.ndarray  # int64
    metric_names: tuple[str, ...]
    values: np.ndarray  # float64 (n, len(metric_names))
    lat: np.ndarray  # float64
    lon: np.ndarray  # float64
    outliers: Sequence[Sequence[str]]
    z_names: tuple[str, ...]
    zscores: np.ndarray  # float64 (n, len(z_names)), rounded to 4 decimals
    late: np.ndarray  # bool
    ingested_at: datetime | None = None
    faults: Sequence[Sequence[str]] | None = None

    def __len__(self) -> int:
        return len(self.station_id)

    def rows(self) -> Iterator[EnrichedReading]:
        """The same readings as objects (backends without a column-wise write path, and tests)."""
        for i in range(len(self)):
            zs = {n: float(v) for n, v in zip(self.z_names, self.zscores[i], strict=True) if math.isfinite(v)}
            lat, lon = float(self.lat[i]), float(self.lon[i])
            yield EnrichedReading(
                station_id=self.station_id[i],
                ts=datetime.fromtimestamp(int(self.ts_ms[i]) / 1000, tz=UTC),
                seq=int(self.seq[i]),
                metrics={n: float(v) for n, v in zip(self.metric_names, self.values[i], strict=True)
                         if not math.isnan(v)},
                lat=None if math.isnan(lat) else lat, lon=None if math.isnan(lon) else lon,
                outliers=tuple(self.outliers[i]), zscores=zs,
                faults=tuple(self.faults[i]) if self.faults is not None else (),
                late=bool(self.late[i]), ingested_at=self.ingested_at,
            )

    @classmethod
    def of(cls, readings: Sequence[EnrichedReading]) -> ReadingBatch:
        """Columns from reading objects (tests; the union of their metric and z-score names)."""
        names = tuple(dict.fromkeys(n for r in readings for n in r.metrics))
        znames = tuple(dict.fromkeys(n for r in readings for n in r.zscores))
        values = np.array([[r.metrics.get(n, math.nan) for n in names] for r in readings], dtype="float64")
        zs = np.array([[r.zscores.get(n, math.nan) for n in znames] for r in readings], dtype="float64")
        moments = {r.ingested_at for r in readings}
        if len(moments) > 1:
            raise ValueError("a ReadingBatch has one ingested_at")
        return cls(
            station_id=[r.station_id for r in readings],
            ts_ms=np.array([round(r.ts.timestamp() * 1000) for r in readings], dtype="int64"),
            seq=np.array([r.seq for r in readings], dtype="int64"),
            metric_names=names, values=values.reshape(len(readings), len(names)),
            lat=np.array([math.nan if r.lat is None else r.lat for r in readings], dtype="float64"),
            lon=np.array([math.nan if r.lon is None else r.lon for r in readings], dtype="float64"),
            outliers=[list(r.outliers) for r in readings], z_names=znames,
            zscores=zs.reshape(len(readings), len(znames)),
            late=np.array([r.late for r in readings], dtype=bool),
            ingested_at=moments.pop() if moments else None,
            faults=[list(r.faults) for r in readings],
        )
