"""Dead-letter rows of the JVM validation survive the hand-over to the sink (Arrow), whatever the bytes were.

The R3 reliability test found that a value that is not valid UTF-8 (or a key that is not) became an invalid Spark
string, and ``toArrow()`` in the sink failed on it, batch after batch. The rows now carry the value's head as binary
plus the whole value's size and SHA-256; the sink decodes (see tests/scorer/test_sink.py).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from citysense_common.contract import DEAD_LETTER_PAYLOAD_BYTES, MAX_READING_BYTES
from citysense_scorer.validation import parse_and_validate

NOW = datetime.now(UTC)
RAW = "key binary, value binary, topic string, partition int, offset long, timestamp_ms long"


def valid(station: str) -> bytes:
    return json.dumps({"schema_version": 1, "station_id": station, "ts": NOW.isoformat(), "seq": 0,
                       "metrics": {"pm2_5": 5.0}}).encode()


def test_hostile_bytes_reach_arrow_as_binary_head_with_size_and_hash(spark, registry) -> None:  # noqa: ANN001
    not_utf8 = b"\xa7\xff{not utf-8"
    huge = b'{"padding":"' + b"\xff" * 1_048_576 + b'"}'
    rows = [
        (None, not_utf8, "t", 0, 0, int(NOW.timestamp() * 1000)),
        (None, huge, "t", 0, 1, int(NOW.timestamp() * 1000)),
        (b"\xc3\x28bad-key", b"{", "t", 0, 2, int(NOW.timestamp() * 1000)),
        (b"st-1", valid("st-1"), "t", 0, 3, int(NOW.timestamp() * 1000)),
        (None, None, "t", 0, 4, int(NOW.timestamp() * 1000)),
    ]
    df = parse_and_validate(spark.createDataFrame(rows, RAW), registry, future_tolerance_s=300)
    table = df.toArrow()  # failed before: "Wrapping ... failed" on the invalid UTF-8 string
    got = {r["offset"]: r for r in table.to_pylist()}

    assert got[0]["reason"] == "malformed_json" and got[0]["detail"] == "not valid UTF-8"
    assert got[0]["payload"] == not_utf8
    assert got[0]["payload_size"] == len(not_utf8)
    assert got[0]["payload_sha256"] == hashlib.sha256(not_utf8).hexdigest()

    assert got[1]["reason"] == "payload_too_large"
    assert got[1]["detail"] == f"message is {len(huge)} bytes; the limit is {MAX_READING_BYTES}"
    assert got[1]["payload"] == huge[:DEAD_LETTER_PAYLOAD_BYTES]  # only the head crosses into Python
    assert got[1]["payload_size"] == len(huge)
    assert got[1]["payload_sha256"] == hashlib.sha256(huge).hexdigest()

    assert got[2]["reason"] == "malformed_json" and got[2]["key"] == "\ufffd(bad-key"

    assert got[3]["reason"] is None and got[3]["station_id"] == "st-1"
    assert (got[3]["payload"], got[3]["payload_size"], got[3]["payload_sha256"]) == (None, None, None)

    assert got[4]["reason"] == "malformed_json" and got[4]["detail"] == "empty message (null value)"
    assert (got[4]["payload"], got[4]["payload_size"], got[4]["payload_sha256"]) == (None, None, None)
