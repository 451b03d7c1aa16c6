"""Sensor-fault detection (alert kind ``sensor_fault``): flatline, stuck at a range limit, spike, PM2.5 > PM10.

Pure per-station state machines fed one reading at a time (in event-time order), so every detector is testable on
hand-built sequences. A reading flagged faulty for a metric lists that metric in the reading's ``faults``; the
threshold engine must not aggregate it (a frozen or spiking sensor is not air quality).

Detectors, per metric unless noted:

* **flatline** - the same value ``flatline_n`` (30) readings in a row, only for metrics whose registry entry says
  they vary (rain at 0 mm/h is exempt). A pollution episode changes value every reading, so it never trips this.
* **stuck** - ``stuck_n`` (5) readings in a row exactly at a physical range limit that the metric's registry
  distribution puts more than ``limit_sigma`` (4) standard deviations from its mean. That exempts natural floors
  and ceilings (0 lx at night, 0 m/s calm air, 100 % humidity in fog, 0 µg/m³ PM in clean air) while a noise
  sensor reading 0 dB(A) or a thermometer pinned at -50 °C is caught.
* **spike** - a jump of more than ``spike_k`` (6) sigma from the previous value that returns (to within ``spike_k``
  sigma of the pre-jump value) at the next reading. Sigma is the station's learned baseline std once warm, the
  registry std before. The jump reading is excluded from aggregates at once (tentatively: if the level stays, it
  was a real step, costs one reading, and raises nothing); a slow rise never makes a single large jump.
* **pm_order** (station) - PM2.5 greater than PM10 at the same reading (PM10 includes PM2.5, so this is
  physically impossible), beyond ``pm_tolerance_abs`` + ``pm_tolerance_rel`` * PM10 for optical-sensor noise.
  Each such reading flags both metrics; ``pm_order_n`` (3) in a row raise the alert.

Each fault raises its own alert (one per station, fault and metric) and resolves it after ``resolve_after`` clean
readings of that metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity
from citysense_common.registry import Metric

from citysense_scorer.health.alert_ids import alert_id, build_event
from citysense_scorer.health.baselines import Baseline, BaselineConfig

FLATLINE = "flatline"
STUCK = "stuck"
SPIKE = "spike"
PM_ORDER = "pm_order"
PM_ORDER_METRIC = "pm2_5"  # the pm_order alert is filed under PM2.5 (the value that cannot be right)


@dataclass(frozen=True)
class FaultConfig:
    flatline_n: int = 30
    stuck_n: int = 5
    limit_sigma: float = 4.0
    spike_k: float = 6.0
    pm_order_n: int = 3
    pm_tolerance_abs: float = 1.0
    pm_tolerance_rel: float = 0.05
    resolve_after: dict[str, int] = field(
        default_factory=lambda: {FLATLINE: 3, STUCK: 3, SPIKE: 60, PM_ORDER: 10})


def fault_rule_id(fault: str, metric: str) -> str:
    return f"fault-{fault.replace('_', '-')}.{metric}"


@dataclass
class OpenFault:
    alert_id: str
    opened_ms: int
    events: int = 1
    clean: int = 0  # consecutive clean readings since the condition last held


@dataclass
class MetricTrack:
    """Everything remembered about one metric of one station."""

    baseline: Baseline = field(default_factory=Baseline)
    last: float | None = None
    run: int = 0  # consecutive readings equal to ``last``
    limit_run: int = 0  # consecutive readings at a suspicious range limit
    pending_jump_from: float | None = None  # value before an unconfirmed jump
    pending_jump_ms: int = 0
    pending_jump_value: float = math.nan
    open: dict[str, OpenFault] = field(default_factory=dict)  # fault -> open alert


@dataclass
class ReadingVerdict:
    faults: set[str] = field(default_factory=set)  # metrics flagged faulty in this reading
    baseline_z: dict[str, float] = field(default_factory=dict)
    events: list[AlertEvent] = field(default_factory=list)


_MESSAGES = {
    FLATLINE: "{label} sensor reports the same value {value:g} {unit} for {n} readings in a row (frozen sensor?)",
    STUCK: "{label} sensor stuck at its range limit {value:g} {unit} (saturated or disconnected?)",
    SPIKE: "{label} sensor spiked to {value:g} {unit} and returned at once (electrical or optical glitch)",
    PM_ORDER: "PM2.5 {value:g} µg/m³ exceeds PM10 {other:g} µg/m³ at the same time, which is physically "
              "impossible (miscalibrated particulate sensor)",
}
_RESOLVED = "{label} sensor fault ({fault}) cleared: readings look plausible again"


def suspicious_limits(metric: Metric, profile: str, limit_sigma: float) -> tuple[float, ...]:
    """Range limits where a stuck reading is a fault rather than a natural extreme."""
    dist = metric.profiles.get(profile)
    if dist is None:
        return ()
    return tuple(lim for lim in (metric.range.min, metric.range.max)
                 if abs(lim - dist.mean) / dist.std > limit_sigma)


_LIMITS: dict[tuple[int, str, float], dict[str, tuple[float, ...]]] = {}


def _limits(metrics: dict[str, Metric], profile: str, limit_sigma: float) -> dict[str, tuple[float, ...]]:
    """:func:`suspicious_limits` of every metric, computed once per registry (a detector is built per station and
    micro-batch). Keyed by the registry dict's identity, which the health context holds for the query's life."""
    key = (id(metrics), profile, limit_sigma)
    cached = _LIMITS.get(key)
    if cached is None or cached.keys() != metrics.keys():
        cached = _LIMITS[key] = {name: suspicious_limits(m, profile, limit_sigma) for name, m in metrics.items()}
    return cached


class FaultDetector:
    """Fault state of one station; feed readings in event-time order."""

    def __init__(self, station_id: str, metrics: dict[str, Metric], profile: str, config: FaultConfig,
                 baseline_config: BaselineConfig) -> None:
        self.station_id = station_id
        self.metrics = metrics
        self.profile = profile
        self.config = config
        self.baseline_config = baseline_config
        self.tracks: dict[str, MetricTrack] = {}
        self.pm_run = 0
        self._limits = _limits(metrics, profile, config.limit_sigma)
        self._std: dict[str, float] = {}

    def _registry_std(self, name: str) -> float:
        std = self._std.get(name)
        if std is None:
            dist = self.metrics[name].profiles.get(self.profile)
            std = self._std[name] = dist.std if dist else max(
                1e-9, (self.metrics[name].range.max - self.metrics[name].range.min) / 100)
        return std

    def observe(self, ts_ms: int, values: dict[str, float], lat: float | None = None,
                lon: float | None = None) -> ReadingVerdict:
        verdict = ReadingVerdict()
        conditions: dict[tuple[str, str], tuple[bool, float, dict[str, float]]] = {}
        for name, value in values.items():
            if name not in self.metrics or value is None or not math.isfinite(value):
                continue
            track = self.tracks.setdefault(name, MetricTrack())
            for fault, holds, extra in self._metric_conditions(name, track, ts_ms, value, verdict):
                if holds or track.open:  # otherwise nothing to open or count towards a resolve
                    conditions[(fault, name)] = (holds, value, extra)
        pm25, pm10 = values.get("pm2_5"), values.get("pm10")
        if pm25 is not None and pm10 is not None and math.isfinite(pm25) and math.isfinite(pm10):
            bad = pm25 > pm10 + self.config.pm_tolerance_abs + self.config.pm_tolerance_rel * pm10
            self.pm_run = self.pm_run + 1 if bad else 0
            if bad:
                verdict.faults.update(("pm2_5", "pm10"))
            conditions[(PM_ORDER, PM_ORDER_METRIC)] = (self.pm_run >= self.config.pm_order_n, pm25, {"other": pm10})
        for (fault, name), (holds, value, extra) in conditions.items():
            self._lifecycle(fault, name, holds, value, ts_ms, extra, lat, lon, verdict)
        # Learn the station's normal only from readings that passed fault detection.
        for name, value in values.items():
            if name in self.tracks and name not in verdict.faults and value is not None and math.isfinite(value):
                z = self.tracks[name].baseline.zscore(value, self.baseline_config, self._registry_std(name))
                if z is not None:
                    verdict.baseline_z[name] = z
                self.tracks[name].baseline.update(value, self.baseline_config)
        return verdict

    def _metric_conditions(self, name: str, track: MetricTrack, ts_ms: int, value: float,
                           verdict: ReadingVerdict) -> list[tuple[str, bool, dict[str, float]]]:
        cfg = self.config
        out: list[tuple[str, bool, dict[str, float]]] = []
        # flatline
        track.run = track.run + 1 if track.last is not None and value == track.last else 1
        if self.metrics[name].varies:
            flat = track.run >= cfg.flatline_n
            if flat:
                verdict.faults.add(name)
            out.append((FLATLINE, flat, {"n": float(track.run)}))
        # stuck at a suspicious range limit
        at_limit = value in self._limits[name]
        track.limit_run = track.limit_run + 1 if at_limit else 0
        stuck = track.limit_run >= cfg.stuck_n
        if stuck:
            verdict.faults.add(name)
        out.append((STUCK, stuck, {}))
        # spike: confirm or dismiss the previous reading's jump, then look for a new one
        sigma = self._sigma(name, track)
        spiked = False
        if track.pending_jump_from is not None:
            if abs(value - track.pending_jump_from) <= cfg.spike_k * sigma:
                spiked = True
            track.pending_jump_from = None
        elif track.last is not None and abs(value - track.last) > cfg.spike_k * sigma:
            track.pending_jump_from = track.last
            track.pending_jump_ms = ts_ms
            track.pending_jump_value = value
            verdict.faults.add(name)  # tentative: excluded from aggregates until the next reading decides
        out.append((SPIKE, spiked, {"spike": track.pending_jump_value} if spiked else {}))
        track.last = value
        return out

    def _sigma(self, name: str, track: MetricTrack) -> float:
        registry_std = self._registry_std(name)
        if track.baseline.warm(self.baseline_config):
            return track.baseline.std(self.baseline_config.min_std_fraction * registry_std)
        return registry_std

    def _lifecycle(self, fault: str, name: str, holds: bool, value: float, ts_ms: int, extra: dict[str, float],
                   lat: float | None, lon: float | None, verdict: ReadingVerdict) -> None:
        track = self.tracks.setdefault(name, MetricTrack())
        current = track.open.get(fault)
        if not holds and current is None:
            return  # the usual case: nothing wrong and nothing open (checked first: it runs for every track)
        rule = fault_rule_id(fault, name)
        metric = self.metrics.get(name)
        label = {"pm2_5": "PM2.5", "pm10": "PM10"}.get(name, name.replace("_", " ").capitalize())
        unit = metric.unit if metric else ""
        if holds and current is None:
            shown = extra.get("spike", value)
            opened = OpenFault(alert_id(self.station_id, rule, ts_ms), ts_ms)
            track.open[fault] = opened
            message = _MESSAGES[fault].format(label=label, value=shown, unit=unit, n=int(extra.get("n", 0)),
                                              other=extra.get("other", math.nan))
            verdict.events.append(self._event(opened, AlertState.OPEN, rule, name, shown, ts_ms, message, lat, lon))
        elif holds and current is not None:
            current.clean = 0
        elif current is not None:
            current.clean += 1
            if current.clean >= self.config.resolve_after.get(fault, 3):
                current.events += 1
                message = _RESOLVED.format(label=label, fault=fault.replace("_", " "))
                verdict.events.append(
                    self._event(current, AlertState.RESOLVED, rule, name, value, ts_ms, message, lat, lon))
                del track.open[fault]

    def _event(self, fault: OpenFault, state: AlertState, rule: str, metric: str, value: float, ts_ms: int,
               message: str, lat: float | None, lon: float | None) -> AlertEvent:
        return build_event(alert=fault.alert_id, number=fault.events, state=state, kind=AlertKind.SENSOR_FAULT,
                           severity=Severity.WARNING, rule_id=rule, station_id=self.station_id,
                           opened_ms=fault.opened_ms, event_ms=ts_ms, message=message, metric=metric,
                           value=value, lat=lat, lon=lon)
