"""Whether a streaming checkpoint fits the configured station-health setting, checked before Spark starts."""

from __future__ import annotations

import json
from pathlib import Path

from citysense_scorer.health.spark import STATE_PROVIDER

PROVIDER_CONF = "spark.sql.streaming.stateStore.providerClass"
HEALTH_OPERATOR = "transformWithStateInPandasExec"


class CheckpointMismatch(RuntimeError):
    """The existing streaming checkpoint was written by a query of the other health setting; Spark cannot resume it."""


def check_checkpoint(checkpoint_dir: Path, health_enabled: bool) -> None:
    """Refuse, with the fix in the message, to resume a checkpoint written with the other ``health_enabled``.

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
