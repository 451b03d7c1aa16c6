"""Station-health settings (environment prefix ``CITYSENSE_``); the scorer's settings include them."""

from __future__ import annotations

from citysense_common.settings import CommonSettings
from pydantic import Field


class HealthSettings(CommonSettings):
    """Station-health settings (environment prefix ``CITYSENSE_``)."""

    health_enabled: bool = Field(default=True, description="run baselines, fault, offline and forecast detection "
                                 "in the stream (CITYSENSE_HEALTH_ENABLED=false turns them off)")
    health_buckets: int = Field(default=8, ge=1, le=4096, description="state-store keys the stations are hashed "
                                "into; changing it starts the learned state afresh (baselines warm up again)")
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
