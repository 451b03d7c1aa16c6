"""Python reference of the scorer's validation: ``parse_reading`` plus the registry checks the scorer adds.

The scorer's decoder (:mod:`citysense_scorer.source.decode`) calls it for every message its fast path does not take, and
tests check that the fast path never disagrees with it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from citysense_common.contract import ContractError, DeadLetterReason, Reading, parse_reading
from citysense_common.registry import Registry


def validate_reading(raw: bytes | str, registry: Registry, now: datetime, future_tolerance_s: float = 300) -> Reading:
    """Return the reading with metric aliases normalised to canonical names, or raise :class:`ContractError`."""
    reading = parse_reading(raw)
    canonical: dict[str, float] = {}
    for name, value in reading.metrics.items():
        metric = registry.resolve(name)
        key = metric.name if metric else name
        if key in canonical:
            raise ContractError(DeadLetterReason.SCHEMA_VIOLATION, f"metrics: {key} given twice (name and alias)")
        canonical[key] = value
    unknown = [name for name in reading.metrics if registry.resolve(name) is None]
    if unknown:
        raise ContractError(DeadLetterReason.UNKNOWN_METRIC, f"unknown metric(s): {', '.join(unknown)}")
    for name, value in canonical.items():
        bounds = registry.metrics[name].range
        if not bounds.min <= value <= bounds.max:
            raise ContractError(
                DeadLetterReason.OUT_OF_RANGE, f"metrics.{name}: {value} outside [{bounds.min}, {bounds.max}]"
            )
    if reading.ts > now + timedelta(seconds=future_tolerance_s):
        raise ContractError(DeadLetterReason.FUTURE_TIMESTAMP, f"ts {reading.ts} is in the future")
    return reading.model_copy(update={"metrics": canonical})
