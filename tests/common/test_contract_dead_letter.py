"""Dead letters of hostile values: always valid JSON, bounded in size, and traceable to the whole original value."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
from citysense_common.contract import DEAD_LETTER_PAYLOAD_BYTES, DeadLetter, DeadLetterReason, dead_letter

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "contracts/dead-letter.v1.schema.json").read_text())
KAFKA_DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's message.max.bytes default (the broker's is a little more)


def letter(payload: bytes | str | None, **kwargs: object) -> dict:
    made = dead_letter(DeadLetterReason.MALFORMED_JSON, "d", payload, topic="t", partition=0, offset=3, **kwargs)
    raw = made.to_json()
    assert len(raw) < KAFKA_DEFAULT_MAX_BYTES
    doc = json.loads(raw)
    jsonschema.validate(doc, SCHEMA)
    assert DeadLetter.model_validate(doc) is not None
    return doc


def test_invalid_utf8_is_decoded_with_replacement_characters() -> None:
    raw = b"\xa7\xff{not utf-8"
    doc = letter(raw)
    assert doc["payload"] == "\ufffd\ufffd{not utf-8"
    assert doc["payload_truncated"] is False
    assert doc["payload_size"] == len(raw)
    assert doc["payload_sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_1mb_value_is_cut_to_the_first_64kib_with_size_and_hash_of_the_whole() -> None:
    raw = b'{"padding":"' + b"x" * 1_048_576 + b'"}'
    doc = letter(raw)
    assert doc["payload_truncated"] is True
    assert doc["payload"] == raw[:DEAD_LETTER_PAYLOAD_BYTES].decode()
    assert doc["payload_size"] == len(raw)
    assert doc["payload_sha256"] == hashlib.sha256(raw).hexdigest()


def test_worst_case_bytes_still_fit_a_kafka_message() -> None:
    # Every byte invalid (-> U+FFFD) or a control character: each becomes a 6-character JSON escape.
    for raw in (b"\xff" * 1_048_576, b"\x01" * 1_048_576):
        doc = letter(raw)
        assert doc["payload_truncated"] is True
        assert len(doc["payload"]) == DEAD_LETTER_PAYLOAD_BYTES


def test_a_cut_through_a_multibyte_character_drops_the_partial_character() -> None:
    raw = b"a" + "\u20ac".encode() * DEAD_LETTER_PAYLOAD_BYTES  # the cut falls inside a 3-byte character
    doc = letter(raw)
    assert doc["payload"] == "a" + "\u20ac" * ((DEAD_LETTER_PAYLOAD_BYTES - 1) // 3)


def test_a_caller_with_only_the_head_passes_the_whole_values_size_and_hash() -> None:
    whole = b"y" * 200_000
    head = whole[:DEAD_LETTER_PAYLOAD_BYTES]
    digest = hashlib.sha256(whole).hexdigest()
    doc = letter(head, payload_size=len(whole), payload_sha256=digest)
    assert (doc["payload_truncated"], doc["payload_size"], doc["payload_sha256"]) == (True, 200_000, digest)
    assert doc["payload"] == head.decode()


def test_null_value_and_old_dead_letters_still_validate() -> None:
    doc = letter(None)
    assert (doc["payload"], doc["payload_size"], doc["payload_sha256"]) == ("", None, None)
    old = {"schema_version": 1, "reason": "malformed_json", "detail": "d", "payload": "{", "key": None,
           "source": {"topic": "t", "partition": 0, "offset": 1}, "received_at": "2026-01-01T00:00:00.000Z"}
    jsonschema.validate(old, SCHEMA)
    assert DeadLetter.model_validate(old).payload_truncated is False
