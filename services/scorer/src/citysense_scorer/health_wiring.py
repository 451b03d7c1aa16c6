"""The few calls that plug station health into the scorer's query (:mod:`stream`) and sink (:mod:`sink`).

Stream side: :func:`health_stream` adds the health operator after scoring (no-op with
``CITYSENSE_HEALTH_ENABLED=false``). Sink side, per micro-batch: :func:`split_health` takes the event rows out,
:func:`judge_outliers` applies the station's own normal to the outlier verdict, :func:`exclude_faulty` keeps faulty
values out of the threshold engine, :func:`enrich_readings` stores faults and baseline z-scores, and
:func:`apply_station_status` records offline/active.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
from citysense_common.registry import Registry
from citysense_common.settings import load_settings
from citysense_common.store.base import EnrichedReading

from citysense_scorer.health import HealthContext, HealthSettings
from citysense_scorer.health_spark import (
    apply_station_status,
    attach_health,
    baseline_zscores,
    faulty_metrics,
    mask_faulty,
    split_health,
)

__all__ = ["apply_station_status", "enrich_readings", "exclude_faulty", "health_stream", "judge_outliers",
           "split_health"]


def health_stream(scored: Any, settings: Any, registry: Registry) -> Any:
    health = load_settings(HealthSettings)
    if not health.health_enabled:
        return scored
    from citysense_scorer.rules import load_rules

    rules = load_rules(settings.rules_path, registry)
    return attach_health(scored, HealthContext.build(registry, settings.profile, health, rules))


def exclude_faulty(frame: pd.DataFrame, good: pd.DataFrame) -> pd.DataFrame:
    """The engine frame with every faulty value nulled (faulty readings never feed threshold aggregates)."""
    return mask_faulty(frame, good["faults"]) if "faults" in good and len(frame) else frame


def judge_outliers(good: pd.DataFrame, z_bound: float) -> pd.DataFrame:
    """Outlier = beyond ``z_bound`` against the registry distribution *and*, once the station's baseline is warm,
    against the station's own normal too: a station whose normal differs from the profile stops raising outliers
    all day, while a value unusual for both still counts. A faulty value is never an outlier (it is a fault)."""
    if "baseline_z" not in good or good.empty:
        return good
    good = good.copy()

    def verdict(outliers: Any, baseline: Any, faults: Any) -> list[str]:
        own = dict(baseline.items() if isinstance(baseline, dict) else (baseline or []))
        bad = set(faulty_metrics(faults))
        return [m for m in list(outliers) if m not in bad and (m not in own or abs(own[m]) > z_bound)]

    good["outliers"] = [verdict(o, b, f) for o, b, f in zip(good["outliers"], good["baseline_z"], good["faults"],
                                                            strict=True)]
    return good


def enrich_readings(readings: list[EnrichedReading], good: pd.DataFrame) -> list[EnrichedReading]:
    """Readings (built from ``good`` in row order) with their faults and both z-scores."""
    if "faults" not in good or not readings:
        return readings
    out = []
    for reading, faults, baseline in zip(readings, good["faults"], good["baseline_z"], strict=True):
        extra = baseline_zscores(baseline)
        out.append(dataclasses.replace(
            reading, faults=tuple(faulty_metrics(faults)),
            zscores={**reading.zscores, **{k: v for k, v in extra.items() if not math.isnan(v)}}))
    return out
