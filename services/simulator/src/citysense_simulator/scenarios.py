"""Demo and test scenarios layered over the normal simulation.

A scenario is selected with ``--scenario NAME[:key=value,...]`` (repeatable). ``stations`` picks which stations of
this instance take part: a count (``stations=3`` = the first three), or indices joined by ``+`` (``stations=0+7``).
Times are seconds since the simulator started.

    pollution  PM2.5 (and PM10 at 1.4×) rise linearly to ``peak`` µg/m³ above normal over ``ramp`` s, hold for
               ``hold`` s (default: forever), then fall back over ``ramp`` s.       keys: stations start ramp peak hold
    heatwave   temperature rises by ``delta`` °C over ``ramp`` s and stays.             keys: stations start ramp delta
    flatline   a metric freezes at its value when the scenario starts.                  keys: stations start metric
    stuck      a metric sticks at its physical range limit (``at=max`` or ``min``).     keys: stations start metric at
    spikes     a metric jumps by ``size`` σ with ``probability`` per reading, back next. keys: stations start metric
               probability size
    dropout    the stations stop sending for ``duration`` s (default: forever).         keys: stations start duration
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class ScenarioError(ValueError):
    pass


@dataclass
class Scenario:
    name: str
    stations: np.ndarray  # indices into this instance's stations
    start: float = 0.0
    options: dict[str, str] = field(default_factory=dict)
    frozen: np.ndarray | None = None

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.options.get(key, default))
        except ValueError:
            raise ScenarioError(f"scenario {self.name}: {key} must be a number, got {self.options[key]!r}") from None

    def metric_index(self, names: list[str], default: str) -> int:
        metric = self.options.get("metric", default)
        if metric not in names:
            raise ScenarioError(f"scenario {self.name}: metric {metric!r} is not simulated; choose from {names}")
        return names.index(metric)


KNOWN = {"pollution", "heatwave", "flatline", "stuck", "spikes", "dropout"}
_KEYS = {
    "pollution": {"stations", "start", "ramp", "peak", "hold"},
    "heatwave": {"stations", "start", "ramp", "delta"},
    "flatline": {"stations", "start", "metric"},
    "stuck": {"stations", "start", "metric", "at"},
    "spikes": {"stations", "start", "metric", "probability", "size"},
    "dropout": {"stations", "start", "duration"},
}


def _station_indices(text: str, total: int, name: str) -> np.ndarray:
    try:
        if "+" in text:
            indices = np.array(sorted({int(part) for part in text.split("+")}), dtype=np.int64)
        else:
            indices = np.arange(min(int(text), total), dtype=np.int64)
    except ValueError:
        raise ScenarioError(
            f"scenario {name}: stations must be a count or indices joined by '+', got {text!r}") from None
    if indices.size and (indices.min() < 0 or indices.max() >= total):
        raise ScenarioError(f"scenario {name}: station index out of range 0..{total - 1}")
    return indices


def parse_scenario(spec: str, total_stations: int) -> Scenario:
    name, _, rest = spec.partition(":")
    name = name.strip()
    if name not in KNOWN:
        raise ScenarioError(f"unknown scenario {name!r}; choose one of {sorted(KNOWN)}")
    options: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise ScenarioError(f"scenario {name}: expected key=value, got {part!r}")
        if key not in _KEYS[name]:
            raise ScenarioError(f"scenario {name}: unknown option {key!r}; options are {sorted(_KEYS[name])}")
        options[key] = value
    stations = _station_indices(options.get("stations", "1"), total_stations, name)
    scenario = Scenario(name, stations, options=options)
    scenario.start = scenario.number("start", 0.0)
    return scenario


def _ramp(elapsed: float, ramp: float) -> float:
    return 1.0 if ramp <= 0 else min(1.0, max(0.0, elapsed / ramp))


def apply(scenarios: list[Scenario], values: np.ndarray, names: list[str], elapsed: float,
          lo: np.ndarray, hi: np.ndarray, sigma: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Modify this tick's values in place; return a boolean mask of the stations that send this tick."""
    sending = np.ones(values.shape[0], dtype=bool)
    for sc in scenarios:
        since = elapsed - sc.start
        if since < 0 or sc.stations.size == 0:
            continue
        rows = sc.stations
        if sc.name == "pollution":
            ramp, peak, hold = sc.number("ramp", 60), sc.number("peak", 300), sc.number("hold", float("inf"))
            level = _ramp(since, ramp) if since <= ramp + hold else 1.0 - _ramp(since - ramp - hold, ramp)
            for metric, factor in (("pm2_5", 1.0), ("pm10", 1.4)):
                if metric in names:
                    col = names.index(metric)
                    values[rows, col] = np.minimum(values[rows, col] + level * peak * factor, hi[col])
        elif sc.name == "heatwave":
            if "temperature" in names:
                col = names.index("temperature")
                delta = sc.number("delta", 12) * _ramp(since, sc.number("ramp", 300))
                values[rows, col] = np.minimum(values[rows, col] + delta, hi[col])
        elif sc.name == "flatline":
            col = sc.metric_index(names, "temperature")
            if sc.frozen is None:
                sc.frozen = values[rows, col].copy()
            values[rows, col] = sc.frozen
        elif sc.name == "stuck":
            col = sc.metric_index(names, "humidity")
            at = sc.options.get("at", "max")
            if at not in {"max", "min"}:
                raise ScenarioError(f"scenario stuck: at must be 'max' or 'min', got {at!r}")
            values[rows, col] = hi[col] if at == "max" else lo[col]
        elif sc.name == "spikes":
            col = sc.metric_index(names, "noise_level")
            hit = rows[rng.random(rows.size) < sc.number("probability", 0.05)]
            values[hit, col] = np.clip(values[hit, col] + sc.number("size", 10) * sigma[col], lo[col], hi[col])
        elif sc.name == "dropout":
            if since < sc.number("duration", float("inf")):
                sending[rows] = False
    return sending
