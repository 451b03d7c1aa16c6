"""Signed link tokens: round trip, and every way a token is refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from citysense_common.citizen import tokens
from citysense_common.citizen.tokens import ExpiredToken, InvalidToken, WrongPurpose, issue, sign, verify
from pydantic import SecretStr

SECRET = "k" * 16 + "0123456789abcdefghij"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def test_round_trip_for_each_purpose_and_secret_type() -> None:
    for purpose in tokens.PURPOSES:
        for secret in (SECRET, SECRET.encode(), SecretStr(SECRET)):
            token = sign(purpose, "sub_AbC-9_x", NOW + timedelta(hours=1), secret)
            assert verify(token, purpose, SECRET, NOW) == "sub_AbC-9_x"


def test_tokens_are_url_safe_and_carry_no_padding() -> None:
    token = sign("unsubscribe", "abc", NOW, SECRET)
    assert all(c.isalnum() or c in "-_." for c in token) and "=" not in token


def test_expiry_is_exclusive_and_naive_times_are_utc() -> None:
    token = issue("confirm", "abc", SECRET, NOW, timedelta(hours=48))
    assert verify(token, "confirm", SECRET, NOW + timedelta(hours=47, minutes=59)) == "abc"
    assert verify(token, "confirm", SECRET, (NOW + timedelta(hours=47)).replace(tzinfo=None)) == "abc"
    with pytest.raises(ExpiredToken, match="expired"):
        verify(token, "confirm", SECRET, NOW + timedelta(hours=48))


def test_wrong_purpose_is_refused() -> None:
    token = sign("unsubscribe", "abc", NOW + timedelta(days=1), SECRET)
    with pytest.raises(WrongPurpose):
        verify(token, "confirm", SECRET, NOW)


def test_another_secret_is_refused() -> None:
    token = sign("confirm", "abc", NOW + timedelta(days=1), SECRET)
    with pytest.raises(InvalidToken, match="not valid"):
        verify(token, "confirm", SECRET + "x", NOW)


def test_altered_payload_is_refused_even_with_a_valid_looking_form() -> None:
    token = sign("confirm", "abc", NOW + timedelta(days=1), SECRET)
    payload, mac = token.split(".")
    forged = base64.urlsafe_b64encode(b"confirm:xyz:" + str(int((NOW + timedelta(days=9)).timestamp())).encode())
    for bad in (f"{forged.decode().rstrip('=')}.{mac}", f"{payload}.{mac[:-2]}", f"{payload[:-1]}.{mac}"):
        with pytest.raises(InvalidToken):
            verify(bad, "confirm", SECRET, NOW)


@pytest.mark.parametrize("bad", ["", "nodot", "a.b.c", "!!!.???", "a" * 600 + ".b", "é.é"])
def test_malformed_tokens_are_refused(bad: str) -> None:
    with pytest.raises(InvalidToken):
        verify(bad, "confirm", SECRET, NOW)


def test_signing_refuses_what_it_cannot_encode() -> None:
    with pytest.raises(ValueError, match="purpose"):
        sign("delete", "abc", NOW, SECRET)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="':'"):
        sign("confirm", "a:b", NOW, SECRET)
    with pytest.raises(ValueError, match="empty"):
        sign("confirm", "abc", NOW, "")
