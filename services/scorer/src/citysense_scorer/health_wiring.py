"""The few calls that plug station health into the scorer's query (:mod:`stream`) and sink (:mod:`sink`).

Stream side: :func:`health_stream` adds the health operator after scoring (no-op with
``CITYSENSE_HEALTH_ENABLED=false``), which gives each reading one fault flag and one baseline z column per metric.
Sink side, per micro-batch: :func:`split_health` takes the event rows out,
:func:`judge_outliers` applies the station's own normal to the outlier verdict, :func:`exclude_faulty` keeps faulty
values out of the threshold engine, :func:`health_columns` gives the stored faults, and
:func:`apply_station_status` records offline/active.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from citysense_common.registry import Registry
from citysense_common.settings import load_settings

from citysense_scorer.health import HealthContext, HealthSettings
from citysense_scorer.health_spark import (
    STATE_PROVIDER,
    STATION_Z_PREFIX,
    apply_station_status,
    attach_health,
    fault_columns,
    fault_matrix,
    mask_faulty,
    split_health,
)

__all__ = ["STATION_Z_PREFIX", "CheckpointMismatch", "apply_station_status", "check_checkpoint", "exclude_faulty",
           "health_columns", "health_stream", "judge_outliers", "split_health"]

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
    return mask_faulty(frame, good) if fault_columns(good) and len(frame) else frame


def judge_outliers(good: pd.DataFrame, z_bound: float) -> pd.DataFrame:
    """Outlier = beyond ``z_bound`` against the registry distribution *and*, once the station's baseline is warm,
    against the station's own normal too: a station whose normal differs from the profile stops raising outliers
    all day, while a value unusual for both still counts. A faulty value is never an outlier (it is a fault).
    Only rows with registry outliers are looked at (few: the verdict columns are read for those rows alone)."""
    names = fault_columns(good)
    if not names or good.empty:
        return good
    outliers = good["outliers"].tolist()
    rows = [i for i, o in enumerate(outliers) if o is not None and len(o)]
    if not rows:
        return good
    column = {name: j for j, name in enumerate(names)}
    faults = fault_matrix(good.iloc[rows], names)
    own = good.iloc[rows][[f"{STATION_Z_PREFIX}{n}" for n in names]].to_numpy(dtype="float64")
    for k, i in enumerate(rows):
        outliers[i] = [m for m in outliers[i] if (j := column.get(m)) is None
                       or (not faults[k, j] and (math.isnan(own[k, j]) or abs(own[k, j]) > z_bound))]
    return good.assign(outliers=outliers)


def health_columns(good: pd.DataFrame) -> list[list[str]] | None:
    """Per valid row (in order): the metrics flagged faulty, for the stored reading (sorted); None without the
    health operator. (The baseline z-scores travel as ``z_station:<metric>`` columns beside the registry ones.)"""
    names = fault_columns(good)
    if not names:
        return None
    faults = fault_matrix(good, names)
    out: list[list[str]] = [[] for _ in range(len(good))]
    for i in np.flatnonzero(faults.any(axis=1)):
        out[i] = sorted(names[j] for j in np.flatnonzero(faults[i]))
    return out
