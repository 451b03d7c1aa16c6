"""The real-time path's JVM checks (source/columns.py) against the reference validator: whatever they accept, the
reference accepts with the same values, and the canonical shape stations send is always accepted."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import pytest
from citysense_common.contract import Reading
from citysense_common.registry import load_registry
from citysense_scorer.source.columns import reading_columns
from citysense_scorer.source.decode import Decoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scorer.reading_cases import CASES, NOW, doc
from tests.scorer.source.test_decode import mutated_documents, reference, valid_documents

REGISTRY = load_registry()
METRICS = list(REGISTRY.metrics)
NOW_MS = int(NOW.timestamp() * 1000)
NOW_US = NOW_MS * 1000
APPEND_TIME, CREATE_TIME = 1, 0


def accepted(spark, payloads: list[bytes | None], *, kind: int = APPEND_TIME) -> dict[int, dict]:  # noqa: ANN001
    """Index of each payload the JVM checks accept -> its row, as if the broker stamped it now."""
    stamp = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    rows = [(i, p, stamp, kind) for i, p in enumerate(payloads)]
    raw = spark.createDataFrame(rows, "offset BIGINT, value BINARY, timestamp TIMESTAMP, timestampType INT")
    out = reading_columns(raw, REGISTRY, METRICS, future_tolerance_s=300, keep=("offset",))
    return {r["offset"]: r.asDict() for r in out.collect()}


def same_values(row: dict, decoded) -> bool:  # noqa: ANN001
    if row["ts_ms"] != decoded.ts_us // 1000 or row["lat"] != decoded.lat or row["lon"] != decoded.lon:
        return False
    return all((a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=0,
               abs_tol=0)) for a, b in zip(row["values"], decoded.values, strict=True))


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(REGISTRY, 300)


def test_every_case_the_checks_accept_is_valid_with_the_same_values(spark, decoder) -> None:  # noqa: ANN001
    payloads = [payload for _, payload, _ in CASES]
    rows = accepted(spark, payloads)
    for i, (name, payload, expected) in enumerate(CASES):
        if i in rows:
            assert expected is None, f"{name}: accepted, but the reference says {expected}"
            verdict = decoder.decode_one(payload, NOW_US)
            assert not isinstance(verdict, tuple), name
            assert same_values(rows[i], verdict), (name, rows[i], verdict)
    # the shapes stations send are all taken (others may be left to the micro-batch path)
    taken = {CASES[i][0] for i in rows}
    assert {"valid", "valid-location", "valid-null-location"} <= taken, taken


def test_hazardous_values_in_invalid_readings_are_dropped(spark) -> None:  # noqa: ANN001
    hot = {"pm2_5": 300.0}
    payloads = [
        doc(metrics={**hot, "no_such_metric": 1.0}),  # unknown metric
        doc(metrics={**hot, "temperature": 500.0}),  # another metric out of range
        doc(metrics={"pm2_5": 300.0, "particulate_matter": 300.0}),  # a name and its alias
        doc(station_id=12345, metrics=hot),  # station id not a string
        doc(extra=1, metrics=hot),  # unknown top-level field
        doc(location={"lat": 52.5, "lon": 13.4, "alt": 30}, metrics=hot),  # unknown location field
        doc(location={"lat": "52.5", "lon": 13.4}, metrics=hot),  # a string for a number
        doc(schema_version=True, metrics=hot),
        doc(seq=-1, metrics=hot),
        doc(ts="2026-01-01T00:00:00", metrics=hot),  # no time zone
        doc(ts=datetime.fromtimestamp(NOW_MS / 1000 + 3600, UTC).isoformat(), metrics=hot),  # from the future
        b"{not json",
        None,
    ]
    assert accepted(spark, payloads) == {}


def test_a_producer_stamp_cannot_vouch_for_the_future(spark) -> None:  # noqa: ANN001
    ahead = datetime.fromtimestamp(NOW_MS / 1000 + 3600, UTC).isoformat()
    # CreateTime: the record's own timestamp counts only up to the scorer's clock, so an hour ahead is rejected
    assert accepted(spark, [doc(ts=ahead)], kind=CREATE_TIME) == {}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(valid_documents, mutated_documents), min_size=60, max_size=60))
def test_generated_documents_never_accepted_unless_valid(spark, decoder, registry, documents) -> None:  # noqa: ANN001
    payloads = [json.dumps(d).encode() for d in documents]
    rows = accepted(spark, payloads)
    for i, row in rows.items():
        verdict = reference(payloads[i], registry)
        assert isinstance(verdict, Reading), (documents[i], verdict)
        decoded = decoder.decode_one(payloads[i], NOW_US)
        assert same_values(row, decoded), (documents[i], row, decoded)
    for i, document in enumerate(documents):  # the canonical shape (the decoder's fast path) is always taken
        if decoder.fast(payloads[i], NOW_US) is not None:
            assert i in rows, document
