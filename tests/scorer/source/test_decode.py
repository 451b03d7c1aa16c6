"""The decoder (validation + per-reading scores in the source task) agrees with the reference validator."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest
from citysense_common.contract import (
    DEAD_LETTER_PAYLOAD_BYTES,
    ContractError,
    DeadLetterReason,
    Reading,
    format_ts,
)
from citysense_common.registry import load_registry
from citysense_scorer.source.decode import EPOCH, MAX_SEQ, ONE_US, Decoder
from citysense_scorer.source.reference import validate_reading
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.scorer.reading_cases import CASES, NOW, doc

NOW_US = (NOW - EPOCH) // ONE_US


@pytest.fixture(scope="module")
def decoder(registry) -> Decoder:  # noqa: ANN001
    return Decoder(registry, future_tolerance_s=300)


def reference(payload: bytes | None, registry) -> str | Reading:  # noqa: ANN001
    try:
        return validate_reading(payload if payload is not None else b"", registry, NOW)
    except ContractError as exc:
        return exc.reason.value


@pytest.mark.parametrize(("name", "payload", "expected"), CASES, ids=[c[0] for c in CASES])
def test_decoder_and_reference_agree(name, payload, expected, decoder, registry) -> None:  # noqa: ANN001
    got = decoder.decode_one(payload, NOW_US)
    want = reference(payload, registry)
    if expected is None:
        assert isinstance(want, Reading)
        assert not isinstance(got, tuple), got
        assert got.station_id == want.station_id and got.seq == want.seq
        assert got.ts_us == (want.ts - EPOCH) // ONE_US
        assert dict(zip(decoder.names, got.values, strict=True)) == {n: want.metrics.get(n) for n in decoder.names}
    else:
        assert want == expected.value
        reason, detail = got
        assert reason == expected.value and detail


def test_every_dead_letter_reason_is_covered() -> None:
    assert {expected for _, _, expected in CASES if expected} == set(DeadLetterReason)


def test_fast_path_takes_what_stations_send(decoder) -> None:  # noqa: ANN001
    """The simulator's canonical readings never need the (slow) reference path."""
    reading = Reading(schema_version=1, station_id="st-9", ts=NOW - timedelta(seconds=2), seq=41,
                      location={"lat": 48.2, "lon": 16.37},
                      metrics={"pm2_5": 12.5, "temperature": -3.0, "noise_level": 61.0})
    row = decoder.fast(reading.to_json(), NOW_US)
    assert row is not None
    assert (row.station_id, row.seq, row.lat, row.lon) == ("st-9", 41, 48.2, 16.37)
    assert row.ts_us == (reading.ts.replace(microsecond=reading.ts.microsecond // 1000 * 1000) - EPOCH) // ONE_US


@pytest.mark.parametrize("payload", [
    doc(metrics={"particulate_matter": 30.0}),  # alias: the fast path knows aliases too
    doc(location=None),
])
def test_fast_path_accepts_known_spellings(payload, decoder) -> None:  # noqa: ANN001
    assert decoder.fast(payload, NOW_US) is not None


@pytest.mark.parametrize("payload", [
    doc(ts="2026-01-01 00:00:00+01:00"), doc(ts="2026-01-01T00:00Z"), doc(ts=1700000000), doc(schema_version=1.0),
    doc(location={"lat": "52", "lon": 13}), doc(seq=True), doc(metrics={"pm2_5": True}), b"\xef\xbb\xbf{}",
    doc(ts="２０２６-01-01T00:00:00Z"),
])
def test_fast_path_declines_unusual_spellings(payload, decoder) -> None:  # noqa: ANN001
    """Anything outside the canonical shape goes to the reference, which has the last word."""
    assert decoder.fast(payload, NOW_US) is None


# -- generated documents: the fast path either declines or agrees exactly with the reference ----------------------
REGISTRY = load_registry()
scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, width=64),
                    st.text(max_size=8))


@st.composite
def metric_maps(draw: st.DrawFn) -> dict[str, float]:
    """1-4 registry metrics, each under its name or one alias, with in-range values (ints too)."""
    chosen = draw(st.lists(st.sampled_from(list(REGISTRY.metrics.values())), min_size=1, max_size=4,
                           unique_by=lambda m: m.name))
    out: dict[str, float] = {}
    for metric in chosen:
        spelling = draw(st.sampled_from((metric.name, *metric.aliases)))
        lo, hi = metric.range.min, metric.range.max
        out[spelling] = draw(st.one_of(st.floats(lo, hi), st.integers(math.ceil(lo), math.floor(hi))))
    return out


valid_documents = st.fixed_dictionaries(
    {"schema_version": st.just(1), "station_id": st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
     "ts": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2026, 11, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=14))]))
     .flatmap(lambda d: st.sampled_from([d.isoformat(), format_ts(d), d.isoformat().replace("+00:00", "Z")])),
     "seq": st.integers(0, 2**63 - 1), "metrics": metric_maps()},
    optional={"location": st.one_of(st.none(), st.fixed_dictionaries(
        {"lat": st.one_of(st.floats(-90, 90), st.integers(-90, 90)),
         "lon": st.one_of(st.floats(-180, 180), st.integers(-180, 180))}))},
)
FIELDS = ["schema_version", "station_id", "ts", "seq", "metrics", "location", "extra"]
mutated_documents = st.tuples(valid_documents, st.sampled_from(FIELDS), scalars).map(
    lambda t: {**t[0], t[1]: t[2]})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_documents)
def test_fast_path_takes_generated_valid_readings_exactly_as_the_reference(decoder, document) -> None:  # noqa: ANN001
    payload = json.dumps(document).encode()
    fast = decoder.fast(payload, NOW_US)
    assert fast is not None, document
    assert decoder.slow(payload, NOW_US) == fast


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents)
def test_fast_path_never_disagrees_with_the_reference(decoder, registry, document) -> None:  # noqa: ANN001
    payload = json.dumps(document).encode()
    fast = decoder.fast(payload, NOW_US)
    if fast is not None:
        assert decoder.slow(payload, NOW_US) == fast
        assert isinstance(reference(payload, registry), Reading)
    else:
        verdict = reference(payload, registry)
        # the decoder's one limit beyond the contract: seq must fit Spark's LongType (hypothesis found 2**63)
        accepted = isinstance(verdict, Reading) and verdict.seq <= MAX_SEQ
        assert isinstance(decoder.decode_one(payload, NOW_US), tuple) == (not accepted)


# -- record batches ----------------------------------------------------------------------------------------------
def raw_batch(values: list[bytes | None], keys: list[bytes | None] | None = None) -> pa.RecordBatch:
    n = len(values)
    stamp = int(NOW.timestamp() * 1000)
    return pa.record_batch([
        pa.array(keys or [None] * n, pa.binary()), pa.array(values, pa.binary()), pa.array(["readings"] * n),
        pa.array([0] * n, pa.int32()), pa.array(range(n), pa.int64()), pa.array([stamp] * n, pa.int64()),
    ], names=["key", "value", "topic", "partition", "offset", "timestamp_ms"])


def test_batch_types_valid_rows_and_keeps_rejected_bytes(decoder) -> None:  # noqa: ANN001
    hot = doc(metrics={"particulate_matter": 30.0, "temperature": 32.0, "humidity": 70.0},
              location={"lat": 52.5, "lon": 13.4})
    not_utf8 = b"\xa7\xff{not utf-8"
    huge = b'{"padding":"' + b"x" * 1_048_576 + b'"}'
    out = decoder.decode_batch(raw_batch([hot, not_utf8, huge, None], keys=[b"st-1", b"\xc3\x28", None, None]))
    assert out.schema == decoder.schema
    rows = out.to_pylist()

    ok = rows[0]
    assert ok["reason"] is None and ok["payload"] is None and ok["key"] == "st-1"
    assert ok["station_id"] == "st-1" and ok["seq"] == 3 and ok["lat"] == 52.5
    assert ok["pm2_5"] == 30.0 and ok["pm10"] is None and ok["temperature"] == 32.0
    assert not any(name.startswith("z_") or name in ("outliers", "heat_index") for name in ok)  # scored in the sink

    bad = rows[1]
    assert bad["reason"] == "malformed_json" and bad["payload"] == not_utf8 and bad["key"] == "\ufffd("
    assert bad["payload_size"] == len(not_utf8)
    assert bad["payload_sha256"] == hashlib.sha256(not_utf8).hexdigest()
    assert bad["station_id"] is None and bad["pm2_5"] is None

    big = rows[2]
    assert big["reason"] == "payload_too_large" and big["payload"] == huge[:DEAD_LETTER_PAYLOAD_BYTES]
    assert big["payload_size"] == len(huge) and big["payload_sha256"] == hashlib.sha256(huge).hexdigest()

    assert rows[3]["reason"] == "malformed_json" and rows[3]["detail"] == "empty message (null value)"
    assert rows[3]["payload"] is None and rows[3]["payload_size"] is None


def test_batch_without_valid_rows(decoder) -> None:  # noqa: ANN001
    out = decoder.decode_batch(raw_batch([b"[]", b"{"]))
    assert out.column("reason").to_pylist() == ["not_an_object", "malformed_json"]


# -- whose clock judges "future" -------------------------------------------------------------------------------------
DAY = timedelta(days=1)


def stamped_batch(values: list[bytes], stamps: list[datetime], kinds: list[int]) -> pa.RecordBatch:
    """Raw rows with record timestamps and their Kafka timestamp types (0 CreateTime, 1 LogAppendTime)."""
    n = len(values)
    return pa.record_batch([
        pa.array([None] * n, pa.binary()), pa.array(values, pa.binary()), pa.array(["readings"] * n),
        pa.array([0] * n, pa.int32()), pa.array(range(n), pa.int64()),
        pa.array([int(s.timestamp() * 1000) for s in stamps], pa.int64()), pa.array(kinds, pa.int32()),
    ], names=["key", "value", "topic", "partition", "offset", "timestamp_ms", "timestamp_type"])


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_a_producer_stamped_record_cannot_vouch_for_a_reading_from_the_future(decoder) -> None:  # noqa: ANN001
    """CreateTime: the producer (a gateway whose clock runs a day ahead) sets the record timestamp, so it is trusted
    only up to the scorer's own clock; the reading a day ahead is rejected, and ``clock_ms`` says which clock judged."""
    ahead = datetime.now(UTC) + DAY
    out = decoder.decode_batch(stamped_batch([doc(ts=iso(ahead))], [ahead], [0])).to_pylist()[0]
    assert out["reason"] == "future_timestamp"
    assert abs(out["clock_ms"] - datetime.now(UTC).timestamp() * 1000) < 60_000


def test_the_brokers_append_time_judges_alone_so_a_replay_decides_the_same(decoder) -> None:  # noqa: ANN001
    """LogAppendTime: the broker's stamp is the only clock, whenever the record is decoded. A reading 30 minutes
    ahead of its append time an hour ago is from the future (although it is in the past now), and one 4 minutes
    ahead is within the tolerance."""
    appended = datetime.now(UTC) - timedelta(hours=1)
    batch = stamped_batch([doc(ts=iso(appended + timedelta(minutes=30))), doc(ts=iso(appended + timedelta(minutes=4)))],
                          [appended, appended], [1, 1])
    rows = decoder.decode_batch(batch).to_pylist()
    assert [r["reason"] for r in rows] == ["future_timestamp", None]
    assert [r["clock_ms"] for r in rows] == [int(appended.timestamp() * 1000)] * 2
