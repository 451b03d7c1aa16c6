"""The few calls that plug station health into the scorer's query (:mod:`stream`) and sink (:mod:`sink`).

Stream side: :func:`health_stream` adds the health operator after scoring (no-op with
``CITYSENSE_HEALTH_ENABLED=false``). Sink side, per micro-batch: :func:`split_health` takes the event rows out,
:func:`judge_outliers` applies the station's own normal to the outlier verdict, :func:`exclude_faulty` keeps faulty
values out of the threshold engine, :func:`health_columns` gives the stored faults and baseline z-scores, and
:func:`apply_station_status` records offline/active.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from citysense_common.registry import Registry
from citysense_common.settings import load_settings

from citysense_scorer.health import HealthContext, HealthSettings
from citysense_scorer.health_spark import (
    STATE_PROVIDER,
    apply_station_status,
    attach_health,
    baseline_zscores,
    faulty_metrics,
    mask_faulty,
    split_health,
)

__all__ = ["CheckpointMismatch", "apply_station_status", "check_checkpoint", "health_columns", "exclude_faulty",
           "health_stream", "judge_outliers", "split_health"]

PROVIDER_CONF = "spark.sql.streaming.stateStore.providerClass"
HEALTH_OPERATOR = "transformWithStateInPandasExec"


class CheckpointMismatch(RuntimeError):
    """The existing streaming checkpoint was written by a query of the other health setting; Spark cannot resume it."""


def check_checkpoint(checkpoint_dir: Path, health_enabled: bool | None = None) -> None:
    """Refuse, with the fix in the message, to resume a checkpoint written with the other ``health_enabled``
    (default: the configured one).

    Spark cannot add the health operator (``transformWithStateInPandas``) to a checkpoint written without it: the
    checkpoint fixes the number of sources and restores its state store provider (HDFS, while the operator needs
    RocksDB). Nor can it drop the operator again. Spark only finds out inside the first micro-batch, with an
    assertion about source counts; this check reads the checkpoint before anything starts:

    * health on: the newest offset-log entry records the session's state store provider, which the health operator
      always sets to RocksDB, in the same file and write as the offsets themselves - anything else means the
      checkpoint was started without health;
    * health off: the operator metadata under ``state/`` names the health operator.

    A checkpoint without any offset entry is fresh and fits either way.
    """
    if health_enabled is None:
        health_enabled = load_settings(HealthSettings).health_enabled
    spark_dir = checkpoint_dir / "spark"
    try:
        entries = [f for f in (spark_dir / "offsets").iterdir() if f.name.isdigit()]
    except OSError:
        return
    if not entries:
        return
    switch_off = "keep using it with CITYSENSE_HEALTH_ENABLED=false"
    if health_enabled:
        newest = max(entries, key=lambda f: int(f.name))
        try:
            provider = json.loads(newest.read_text(encoding="utf-8").splitlines()[1]).get("conf", {}).get(PROVIDER_CONF)
        except (OSError, ValueError, IndexError, AttributeError):
            return  # unreadable or being written: Spark itself decides
        if provider == STATE_PROVIDER:
            return
        reason = "was written without station health, and Spark cannot add the health operator to it"
    else:
        metadata = [f for f in spark_dir.glob("state/*/_metadata/*/*") if f.is_file()]
        if not any(HEALTH_OPERATOR in f.read_text(encoding="utf-8", errors="replace") for f in metadata):
            return
        reason = "was written with station health on, and Spark cannot drop the health operator from it"
        switch_off = "keep using it with CITYSENSE_HEALTH_ENABLED=true (the default)"
    raise CheckpointMismatch(
        f"the scorer checkpoint {checkpoint_dir} {reason}. Fix: start from a fresh checkpoint - stop the scorer, "
        f"remove {checkpoint_dir} (local stack: rm -rf it; Kubernetes: delete the scorer's checkpoint volume, see "
        "docs/operations.md) and start it again; it then reads the readings topic from its oldest retained message "
        f"- or {switch_off}.")


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


def health_columns(good: pd.DataFrame) -> tuple[list[list[str]] | None, list[dict[str, float]] | None]:
    """Per valid row (in order): the metrics flagged faulty and the z-scores against the station's own baseline
    (``station:<metric>``), for the stored reading; (None, None) without the health operator."""
    if "faults" not in good:
        return None, None
    faults = [faulty_metrics(f) for f in good["faults"]]
    extra = [{k: v for k, v in baseline_zscores(b).items() if not math.isnan(v)} for b in good["baseline_z"]]
    return faults, extra
