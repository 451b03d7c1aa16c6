"""The mail request the API produces and the notifier consumes."""

from __future__ import annotations

import json

import pytest
from citysense_common.citizen.mail import MailRequest, MailRequestError


def test_round_trip_and_key() -> None:
    request = MailRequest(type="confirm", subscription_id="abc_123")
    assert json.loads(request.encode()) == {"type": "confirm", "subscription_id": "abc_123"}
    assert MailRequest.decode(request.encode()) == request
    assert request.key == b"abc_123"
    assert MailRequest.decode('{"type":"confirm","subscription_id":"x","later":1}').subscription_id == "x"


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"type":"warning","subscription_id":"x"}',
                                 b'{"type":"confirm"}', b'{"type":"confirm","subscription_id":""}'])
def test_anything_else_is_refused(raw: bytes) -> None:
    with pytest.raises(MailRequestError, match="not a citizen mail request"):
        MailRequest.decode(raw)
