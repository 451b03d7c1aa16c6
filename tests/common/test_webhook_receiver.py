"""The shared test webhook receiver (citysense_common.testing.webhook_receiver): its signature check against the
reference library, recording and scripted replies over real HTTP, and that no service imports test support."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from citysense_common.testing.webhook_receiver import Reply, WebhookReceiver, verify_signature
from citysense_common.webhooks import generate_secret
from standardwebhooks.webhooks import Webhook

REPO = Path(__file__).resolve().parents[2]
BODY = b'{"specversion":"1.0","id":"ev-1","type":"io.citysense.alert.opened"}'


def reference_headers(secret: str, body: bytes = BODY, at: float | None = None, msg_id: str = "msg_1") -> dict:
    """Headers signed by the Standard Webhooks reference library (not by the code under test)."""
    stamp = datetime.fromtimestamp(int(time.time() if at is None else at), tz=UTC)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(stamp.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, stamp, body)}


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            return r.status, {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}


def test_signature_check_agrees_with_the_reference_library() -> None:
    secret = generate_secret()
    headers = reference_headers(secret)
    assert verify_signature(secret, headers, BODY)
    assert verify_signature(secret, {k.upper(): v for k, v in headers.items()}, BODY)  # header names any case
    # One of several space-separated signatures is enough (key rotation).
    rotated = {**headers, "webhook-signature": "v1,AAAA " + headers["webhook-signature"]}
    assert verify_signature(secret, rotated, BODY)
    assert not verify_signature(secret, headers, BODY + b" ")
    assert not verify_signature(generate_secret(), headers, BODY)
    assert not verify_signature(secret, {**headers, "webhook-id": "msg_2"}, BODY)
    assert not verify_signature(secret, {k: v for k, v in headers.items() if k != "webhook-signature"}, BODY)
    assert not verify_signature(secret, {**headers, "webhook-timestamp": "soon"}, BODY)
    assert not verify_signature("not-a-secret", headers, BODY)
    stale = reference_headers(secret, at=time.time() - 600)
    assert not verify_signature(secret, stale, BODY)
    assert verify_signature(secret, stale, BODY, tolerance_s=900)


def test_receiver_records_verifies_and_counts_rejects() -> None:
    secret = generate_secret()
    with WebhookReceiver(secret) as receiver:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/hook", receiver.url)
        assert post(receiver.url, BODY, reference_headers(secret, msg_id="msg_good"))[0] == 200
        assert post(receiver.url, BODY, reference_headers(generate_secret(), msg_id="msg_bad"))[0] == 200
        good, bad = receiver.wait_for(2, timeout=5)
        assert (good.verified, bad.verified) == (True, False)
        assert good.webhook_id == "msg_good" and good.payload["id"] == "ev-1"
        assert good.headers["webhook-id"] == "msg_good"  # names lower-cased
        assert good.body == BODY and abs(good.at - time.time()) < 5
        assert receiver.rejected == 1
        assert receiver.wait_until(lambda r: r.webhook_id == "msg_good", timeout=1) is good
        assert receiver.wait_until(lambda r: r.webhook_id == "msg_other", timeout=0.2) is None


def test_a_secret_set_later_applies_to_later_deliveries() -> None:
    secret = generate_secret()
    with WebhookReceiver() as receiver:
        post(receiver.url, BODY, reference_headers(secret))
        receiver.secret = secret  # e.g. once the API has answered the subscription request
        post(receiver.url, BODY, reference_headers(secret))
        assert [r.verified for r in receiver.wait_for(2, timeout=5)] == [None, True]
        assert receiver.rejected == 0


def test_scripted_replies_then_200() -> None:
    with WebhookReceiver() as receiver:
        receiver.script[:] = [Reply(503, {"Retry-After": "7"}), Reply(410)]
        status, headers = post(receiver.url, BODY, {})
        assert status == 503 and headers["retry-after"] == "7"
        assert post(receiver.url, BODY, {})[0] == 410
        assert post(receiver.url, BODY, {})[0] == 200
        assert len(receiver.received()) == 3


def test_a_held_reply_keeps_the_sender_waiting_until_released() -> None:
    hold = threading.Event()
    with WebhookReceiver() as receiver:
        receiver.script[:] = [Reply(200, hold=hold)]
        answered: list[int] = []
        sender = threading.Thread(target=lambda: answered.append(post(receiver.url, BODY, {})[0]))
        sender.start()
        receiver.wait_for(1, timeout=5)  # recorded on arrival, before the answer
        sender.join(0.5)
        assert sender.is_alive() and not answered
        hold.set()
        sender.join(5)
        assert answered == [200]


def test_wait_for_fails_after_its_timeout_and_wait_until_stops_when_told() -> None:
    with WebhookReceiver() as receiver:
        with pytest.raises(AssertionError, match="got 0 requests, expected 1"):
            receiver.wait_for(1, timeout=0.2)

        def sender_died() -> None:
            raise RuntimeError("sender exited")

        with pytest.raises(RuntimeError, match="sender exited"):
            receiver.wait_until(lambda r: True, timeout=30, alive=sender_died)


def test_a_given_port_is_used_and_a_closed_receiver_refuses() -> None:
    with WebhookReceiver() as first:
        port = first.port
    with pytest.raises(urllib.error.URLError):
        post(f"http://127.0.0.1:{port}/hook", BODY, {})
    with WebhookReceiver(port=port) as again:  # e.g. a subscriber that comes back on its old address
        assert again.url == f"http://127.0.0.1:{port}/hook"
        assert post(again.url, BODY, {})[0] == 200


def test_keep_alive_answers_with_http_1_1() -> None:
    with WebhookReceiver(keep_alive=True) as receiver:
        req = urllib.request.Request(receiver.url, data=BODY, method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
            assert r.version == 11
    with WebhookReceiver() as receiver:
        req = urllib.request.Request(receiver.url, data=BODY, method="POST")  # noqa: S310 - loopback
        with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310
            assert r.version == 10


def test_no_service_imports_the_test_support() -> None:
    sources = [*REPO.glob("services/*/src/**/*.py"), *REPO.glob("libs/common/src/**/*.py")]
    assert len(sources) > 20
    users = [str(p.relative_to(REPO)) for p in sources
             if "citysense_common/testing/" not in p.as_posix()
             and re.search(r"citysense_common\.testing|from citysense_common import testing", p.read_text("utf-8"))]
    assert users == []
