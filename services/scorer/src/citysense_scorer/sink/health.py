"""What the sink does with the station-health operator's output (pandas, on the driver), per micro-batch.

The operator (:func:`citysense_scorer.health.spark.attach_health`) gives each reading one ``fault_<metric>`` flag
and one ``z_station:<metric>`` column per metric, and adds rows that carry its alert events. The sink
calls :func:`split_health` to take the event rows out, :func:`judge_outliers` to apply the station's own normal to
the outlier verdict, :func:`exclude_faulty` to keep faulty values out of the threshold engine,
:func:`health_columns` for the stored faults and :func:`apply_station_status` to record offline/active. Without the
operator (``CITYSENSE_HEALTH_ENABLED=false``) the columns are absent and every function passes the batch through.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from citysense_common.contract import AlertEvent, AlertKind, AlertState
from citysense_common.store.base import NotFound, Store

from citysense_scorer.health.spark import FAULT_PREFIX, STATION_Z_PREFIX

log = logging.getLogger(__name__)


def split_health(pdf: pd.DataFrame) -> tuple[pd.DataFrame, list[AlertEvent]]:
    """(reading and dead-letter rows, the health alert events carried by the batch)."""
    if "health_event" not in pdf:
        return pdf, []
    carrier = pdf["health_event"].notna()
    events = [AlertEvent.model_validate_json(text) for text in pdf.loc[carrier, "health_event"]]
    events.sort(key=lambda e: (e.event_time, e.station_id, e.state != AlertState.RESOLVED))
    return pdf[~carrier].reset_index(drop=True), events


def fault_matrix(frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    """(rows, metrics) bool from the ``fault_<metric>`` columns (all False where a column is absent)."""
    out = np.zeros((len(frame), len(names)), bool)
    for j, name in enumerate(names):
        if f"{FAULT_PREFIX}{name}" in frame:
            out[:, j] = frame[f"{FAULT_PREFIX}{name}"].to_numpy(dtype=bool)
    return out


def fault_columns(frame: pd.DataFrame) -> list[str]:
    return [c[len(FAULT_PREFIX):] for c in frame.columns if c.startswith(FAULT_PREFIX)]


def mask_faulty(frame: pd.DataFrame, faults: pd.DataFrame) -> pd.DataFrame:
    """Null every value whose ``fault_<metric>`` column in ``faults`` (same index) is set, and the heat index when
    its inputs are faulty, so faulty readings never feed threshold aggregates."""
    frame = frame.copy()
    for metric in fault_columns(faults):
        bad = faults[f"{FAULT_PREFIX}{metric}"].reindex(frame.index).to_numpy(dtype=bool)
        if not bad.any():
            continue
        if metric in frame:
            frame.loc[bad, metric] = np.nan
        if metric in ("temperature", "humidity") and "heat_index" in frame:
            frame.loc[bad, "heat_index"] = np.nan
    return frame


def apply_station_status(store: Store, events: Sequence[AlertEvent]) -> None:
    """Offline opens mark the station offline, resolves mark it active (older status changes never win)."""
    for event in events:
        if event.kind is not AlertKind.STATION_OFFLINE:
            continue
        status = "offline" if event.state is AlertState.OPEN else "active"
        try:
            store.set_station_status(event.station_id, status, event.event_time)
        except NotFound:
            log.warning("station %s: status %s for a station the store does not know", event.station_id, status)


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
