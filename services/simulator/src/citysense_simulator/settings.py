"""Simulator settings (environment prefix ``CITYSENSE_``); built by :func:`load`, never at import."""

from __future__ import annotations

from citysense_common.settings import CommonSettings, load_settings
from pydantic import Field, field_validator

from citysense_simulator.stations import DEFAULT_BBOX, parse_bbox


class SimulatorSettings(CommonSettings):
    stations: int = Field(default=50, ge=0, le=1_000_000, description="stations simulated by this instance")
    rate_hz: float = Field(default=1.0, gt=0, le=100, description="readings per station per second")
    instance_id: str | None = Field(default=None, description="replica identity; default: the host name")
    station_prefix: str = Field(default="st", pattern=r"^[A-Za-z0-9._-]{1,16}$")
    bbox: str = Field(default=",".join(map(str, DEFAULT_BBOX)), description="minLon,minLat,maxLon,maxLat")
    scenarios: list[str] = Field(default_factory=list, description="scenario specs, JSON list")
    history: int = Field(default=300, ge=2, le=10_000)
    recalibration_rate: float = Field(default=0.2, ge=0, le=1)
    recalibration_strength: float = Field(default=0.5, ge=0, le=1)
    outlier_probability: float = Field(default=0.001, ge=0, le=1)
    outlier_sigma: float = Field(default=6.0, ge=0)
    seed: int | None = None
    simulator_metrics_port: int = Field(default=9100, ge=0, le=65535, description="Prometheus port; 0 disables")

    @field_validator("bbox")
    @classmethod
    def _bbox(cls, value: str) -> str:
        parse_bbox(value)
        return value


def load(**overrides: object) -> SimulatorSettings:
    return load_settings(SimulatorSettings, **overrides)
