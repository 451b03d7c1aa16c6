"""Which threshold rules run on the real-time path, and the spec the JVM lifecycle reads (generated, never written
by hand: one entry per rule of ``config/rules.yaml`` that qualifies)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from citysense_common.registry import Registry

from citysense_scorer.alerts.engine import NAMESPACE, threshold_wording
from citysense_scorer.alerts.rules import DERIVED_METRICS, Rule, RuleSet, duration_ms


@dataclass(frozen=True)
class RulePlan:
    """The rules split between the two paths."""

    realtime: RuleSet
    micro_batch: RuleSet


def qualifies(rule: Rule, max_window_ms: int) -> bool:
    """Short windows over a measured metric: derived metrics (heat index) need two metrics of one reading and stay
    in the micro-batch engine, as do long and regulatory windows, whose latency a citizen never notices."""
    return rule.metric not in DERIVED_METRICS and rule.window_ms <= max_window_ms


def plan(rules: RuleSet, *, enabled: bool, max_window: str) -> RulePlan:
    if not enabled:
        return RulePlan(RuleSet(version=rules.version, rules=()), rules)
    limit = duration_ms(max_window)
    fast = tuple(r for r in rules.rules if qualifies(r, limit))
    slow = tuple(r for r in rules.rules if not qualifies(r, limit))
    return RulePlan(RuleSet(version=rules.version, rules=fast), RuleSet(version=rules.version, rules=slow))


def _g(value: float) -> str:
    return f"{value:g}"


def build_spec(rules: RuleSet, registry: Registry, *, watermark_ms: int) -> dict:
    """The JSON document ``org.citysense.scorer.realtime.Spec`` parses."""
    metrics = sorted({r.metric for r in rules.rules})
    series = sorted({(r.metric, r.window_ms) for r in rules.rules})
    entries = []
    for rule in rules.rules:
        what, unit, standard = threshold_wording(rule, registry)
        entries.append({
            "id": rule.id, "series": series.index((rule.metric, rule.window_ms)), "metric": rule.metric,
            "aggregation": rule.aggregation, "partial": rule.partial, "comparator": rule.comparator,
            "bands": [{"threshold": b.threshold, "threshold_text": _g(b.threshold), "severity": b.severity.value,
                       "label": b.label} for b in rule.bands],
            "for_ms": rule.for_ms, "clear": rule.clear, "clear_text": _g(rule.clear), "cooldown_ms": rule.cooldown_ms,
            "window_ms": rule.window_ms, "window": rule.window, "what": what, "unit": unit, "standard": standard,
        })
    body = {"metrics": metrics,
            "series": [{"metric": metrics.index(m), "window_ms": w} for m, w in series],
            "rules": entries}
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    return {"namespace": str(NAMESPACE), "fingerprint": fingerprint, "watermark_ms": watermark_ms, **body}
