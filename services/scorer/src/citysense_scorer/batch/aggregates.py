"""Daily and yearly aggregates per station and metric, and exceedance days against regulatory allowances (pandas).

Daily (UTC day): the daily mean is the mean of the *hourly* means, as air-quality directives define it, so a burst
of readings in one hour does not outweigh the rest of the day; ``max`` is the highest single reading; ``count`` the
readings used; ``hours`` the hours holding at least one value; ``complete`` = at least 18 hourly values (75 %, the EU
data-capture rule). Values a reading flags as sensor faults are left out - a frozen sensor is not a measurement.

Yearly: from the stored daily rows. Only complete days count towards the yearly mean and towards exceedance days
(a day above the limit on 5 hours of data is not a regulatory exceedance).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import pandas as pd
from citysense_common.store.base import DailyAggregate, EnrichedReading

MIN_HOURS_FOR_DAILY_MEAN = 18


@dataclass(frozen=True)
class Allowance:
    """A daily-mean limit that may be exceeded on at most ``allowed_days`` days per calendar year."""

    id: str
    metric: str
    limit: float  # daily mean above this is an exceedance day
    allowed_days: int
    source: str = ""


DEFAULT_ALLOWANCES: tuple[Allowance, ...] = (
    Allowance("eu-pm10-daily", "pm10", 45.0, 18,
              "Directive (EU) 2024/2881, Annex I (from 2030): PM10 daily mean 45 µg/m³, max 18 exceedances/year"),
    Allowance("eu-pm25-daily", "pm2_5", 25.0, 18,
              "Directive (EU) 2024/2881, Annex I (from 2030): PM2.5 daily mean 25 µg/m³, max 18 exceedances/year"),
)


def parse_allowances(text: str) -> tuple[Allowance, ...]:
    """Allowances from a JSON list of {id, metric, limit, allowed_days, source}; the defaults for empty text."""
    if not text:
        return DEFAULT_ALLOWANCES
    return tuple(Allowance(**{"source": "", **item}) for item in json.loads(text))


def readings_frame(readings: Iterable[EnrichedReading]) -> pd.DataFrame:
    """Long format (station_id, metric, ts, value) without the values flagged as sensor faults."""
    rows = [(r.station_id, name, r.ts, value) for r in readings for name, value in r.metrics.items()
            if name not in r.faults]
    frame = pd.DataFrame(rows, columns=["station_id", "metric", "ts", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def daily_aggregates(frame: pd.DataFrame, day: str) -> list[DailyAggregate]:
    """Aggregates of one UTC day from a long frame (rows outside the day are ignored)."""
    start = pd.Timestamp(day, tz="UTC")
    part = frame[(frame["ts"] >= start) & (frame["ts"] < start + pd.Timedelta(days=1))]
    if part.empty:
        return []
    part = part.assign(hour=part["ts"].dt.hour)
    hourly = part.groupby(["station_id", "metric", "hour"])["value"].mean().rename("hourly").reset_index()
    by_day = hourly.groupby(["station_id", "metric"]).agg(mean=("hourly", "mean"), hours=("hourly", "size"))
    raw = part.groupby(["station_id", "metric"])["value"].agg(["max", "size"])
    joined = by_day.join(raw).reset_index().sort_values(["station_id", "metric"])
    return [
        DailyAggregate(station_id=r.station_id, metric=r.metric, day=day, mean=round(float(r.mean), 4),
                       max=float(r.max), count=int(r.size), hours=int(r.hours),
                       complete=int(r.hours) >= MIN_HOURS_FOR_DAILY_MEAN)
        for r in joined.itertuples(index=False)
    ]


@dataclass(frozen=True)
class Exceedance:
    allowance: str
    limit: float
    allowed_days: int
    days_above: int
    exceeded: bool  # more exceedance days than allowed
    source: str


@dataclass(frozen=True)
class YearSummary:
    metric: str
    year: int
    days: int
    complete_days: int
    mean: float | None  # of the complete days' means
    max: float | None
    exceedances: tuple[Exceedance, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def yearly_summary(daily: Sequence[DailyAggregate], year: int,
                   allowances: Sequence[Allowance] = DEFAULT_ALLOWANCES) -> list[YearSummary]:
    out = []
    rows = [d for d in daily if d.day.startswith(f"{year:04d}-")]
    for metric in sorted({d.metric for d in rows}):
        days = [d for d in rows if d.metric == metric]
        complete = [d for d in days if d.complete]
        exceedances = []
        for allowance in allowances:
            if allowance.metric != metric:
                continue
            above = sum(1 for d in complete if d.mean > allowance.limit)
            exceedances.append(Exceedance(allowance.id, allowance.limit, allowance.allowed_days, above,
                                          above > allowance.allowed_days, allowance.source))
        out.append(YearSummary(
            metric=metric, year=year, days=len(days), complete_days=len(complete),
            mean=round(sum(d.mean for d in complete) / len(complete), 4) if complete else None,
            max=max(d.max for d in days) if days else None, exceedances=tuple(exceedances)))
    return out
