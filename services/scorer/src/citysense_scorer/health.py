"""Station health: learned baselines, sensor faults, offline detection and exceedance forecasts for one station.

:class:`StationHealth` combines the pure detectors (:mod:`baselines`, :mod:`faults`, :mod:`offline`,
:mod:`forecast`) and serialises to one JSON document, which :mod:`citysense_scorer.health_spark` keeps per station
in Spark's state store. One document per station (rather than one state row per metric) because every state access
from a Python stateful processor is a round trip to the JVM: one get and one update per station per micro-batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from citysense_common.contract import AlertEvent
from citysense_common.registry import Metric, Registry
from citysense_common.settings import CommonSettings
from pydantic import Field

from citysense_scorer.baselines import Baseline, BaselineConfig
from citysense_scorer.faults import FaultConfig, FaultDetector, MetricTrack, OpenFault
from citysense_scorer.forecast import (
    Buckets,
    ForecastConfig,
    Forecaster,
    ForecastTarget,
    OpenForecast,
    targets_from_rules,
)
from citysense_scorer.offline import OfflineConfig, OfflineState, OfflineTracker

BASELINE_Z_PREFIX = "station:"  # key of the baseline z in EnrichedReading.zscores (':' never occurs in metric names)


class HealthSettings(CommonSettings):
    """Station-health settings (environment prefix ``CITYSENSE_``)."""

    # Off by default: the per-station stateful operator costs the JVM ~7 ms per station per micro-batch on 2 cores
    # (bench/results/p1_profile.txt), so it keeps up with a few hundred stations, not with 1,000+ at 1 Hz.
    health_enabled: bool = Field(default=False, description="run baselines, fault, offline and forecast detection "
                                 "in the stream (CITYSENSE_HEALTH_ENABLED=true turns them on; small cities)")
    offline_after_s: float = Field(default=60, gt=0, description="silence before a station counts as offline")
    offline_groups: dict[str, float] = Field(
        default_factory=dict, description='per station group (glob on station_id): {"lora-*": 900}')
    fault_flatline_n: int = Field(default=30, ge=2)
    fault_stuck_n: int = Field(default=5, ge=1)
    fault_spike_k: float = Field(default=6.0, gt=0)
    fault_pm_order_n: int = Field(default=3, ge=1)
    baseline_half_life: float = Field(default=3600, gt=0, description="samples")
    baseline_warmup: int = Field(default=300, ge=1, description="samples before a baseline verdict")
    forecast_horizon_s: float = Field(default=6 * 3600, gt=0)


@dataclass(frozen=True)
class HealthContext:
    """Everything a station's health needs that is the same for every station (shipped to the workers)."""

    metrics: dict[str, Metric]
    profile: str
    faults: FaultConfig = field(default_factory=FaultConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    offline: OfflineConfig = field(default_factory=OfflineConfig)
    forecast: ForecastConfig = field(default_factory=ForecastConfig)
    targets: tuple[ForecastTarget, ...] = ()

    @classmethod
    def build(cls, registry: Registry, profile: str, settings: HealthSettings, rules: object | None = None,
              ) -> HealthContext:
        forecast = ForecastConfig(horizon_s=settings.forecast_horizon_s)
        units = {name: m.unit for name, m in registry.metrics.items()}
        return cls(
            metrics=dict(registry.metrics), profile=profile,
            faults=FaultConfig(flatline_n=settings.fault_flatline_n, stuck_n=settings.fault_stuck_n,
                               spike_k=settings.fault_spike_k, pm_order_n=settings.fault_pm_order_n),
            baseline=BaselineConfig(half_life=settings.baseline_half_life, warmup=settings.baseline_warmup),
            offline=OfflineConfig(default_s=settings.offline_after_s, groups=tuple(settings.offline_groups.items())),
            forecast=forecast,
            targets=tuple(targets_from_rules(rules, forecast, units)) if rules is not None else (),
        )


@dataclass(frozen=True)
class Row:
    ts_ms: int
    values: dict[str, float]
    lat: float | None = None
    lon: float | None = None


@dataclass
class RowResult:
    faults: list[str]
    baseline_z: dict[str, float]


class StationHealth:
    def __init__(self, station_id: str, ctx: HealthContext) -> None:
        self.station_id = station_id
        self.ctx = ctx
        self.faults = FaultDetector(station_id, ctx.metrics, ctx.profile, ctx.faults, ctx.baseline)
        self.offline = OfflineTracker(station_id, ctx.offline.after_ms(station_id))
        self.forecaster = Forecaster(station_id, list(ctx.targets), ctx.forecast) if ctx.targets else None

    def process(self, rows: list[Row], now_ms: int) -> tuple[list[RowResult], list[AlertEvent], int]:
        """Rows in event-time order, arriving at processing time ``now_ms`` -> per-row results, events, timer."""
        results: list[RowResult] = []
        events: list[AlertEvent] = []
        newest = max(r.ts_ms for r in rows)
        last_loc = next(((r.lat, r.lon) for r in reversed(rows) if r.lat is not None), (None, None))
        offline_events, timer = self.offline.on_readings(now_ms, newest, *last_loc)
        events.extend(offline_events)  # the station is back before anything it says is judged
        for row in rows:
            # Readings may omit the location; events carry the station's last known one.
            lat, lon = (row.lat, row.lon) if row.lat is not None else (self.offline.state.lat, self.offline.state.lon)
            verdict = self.faults.observe(row.ts_ms, row.values, lat, lon)
            events.extend(verdict.events)
            results.append(RowResult(sorted(verdict.faults), {k: round(v, 4) for k, v in verdict.baseline_z.items()}))
            if self.forecaster is not None:
                self.forecaster.add(row.ts_ms, {k: v for k, v in row.values.items() if k not in verdict.faults})
        if self.forecaster is not None:
            events.extend(self.forecaster.evaluate(newest, *last_loc))
        return results, events, timer

    def on_timer(self, now_ms: int) -> list[AlertEvent]:
        return self.offline.on_timer(now_ms)

    # -- state document ------------------------------------------------------------------------------------------
    def dumps(self) -> str:
        doc: dict[str, Any] = {
            "tracks": {name: asdict(t) for name, t in self.faults.tracks.items()},
            "pm_run": self.faults.pm_run,
            "offline": asdict(self.offline.state),
        }
        if self.forecaster is not None:
            doc["forecast"] = {
                "series": {m: {str(b): c for b, c in s.data.items()} for m, s in self.forecaster.series.items()},
                "open": {r: asdict(o) for r, o in self.forecaster.open.items()},
                "last_eval_bucket": self.forecaster.last_eval_bucket,
            }
        return json.dumps(doc, separators=(",", ":"), allow_nan=True)

    @classmethod
    def loads(cls, station_id: str, ctx: HealthContext, text: str | None) -> StationHealth:
        health = cls(station_id, ctx)
        if not text:
            return health
        doc = json.loads(text)
        for name, t in doc.get("tracks", {}).items():
            track = MetricTrack(**{**t, "baseline": Baseline(**t["baseline"]),
                                   "open": {f: OpenFault(**o) for f, o in t["open"].items()}})
            if track.pending_jump_value is None:
                track.pending_jump_value = math.nan
            health.faults.tracks[name] = track
        health.faults.pm_run = doc.get("pm_run", 0)
        health.offline.state = OfflineState(**doc["offline"])
        fc = doc.get("forecast")
        if fc is not None and health.forecaster is not None:
            for metric, data in fc["series"].items():
                if metric in health.forecaster.series:
                    buckets: Buckets = health.forecaster.series[metric]
                    buckets.data = {int(b): list(c) for b, c in data.items()}
            health.forecaster.open = {r: OpenForecast(**o) for r, o in fc["open"].items()}
            health.forecaster.last_eval_bucket = fc["last_eval_bucket"]
        return health
