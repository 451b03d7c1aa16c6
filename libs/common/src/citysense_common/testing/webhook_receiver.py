"""A webhook receiver on loopback: records every delivery and checks its Standard Webhooks signature.

The one receiver of the notifier tests, the reliability suite, the pipeline benches and the container end-to-end
run. It answers each POST from a script of :class:`Reply` (status, headers, optionally held open until an event is
set), then with 200. With a ``secret`` (given at start or set later, e.g. once the API has returned the
subscription's secret) every delivery is verified on arrival: ``Received.verified`` is True, or False for a bad
signature or a timestamp outside the tolerance; without a secret it is None.

The signature check is written out here from the Standard Webhooks specification (v1: base64 HMAC-SHA256 over
``webhook-id.webhook-timestamp.body`` keyed with the base64 part of the ``whsec_`` secret) rather than imported from
``citysense_common.webhooks``, the signing code under test.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TOLERANCE_S = 300  # the Standard Webhooks reference libraries' timestamp tolerance


@dataclass
class Reply:
    """One scripted answer: the status, extra headers, and an event to wait for before answering (mid-request)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@dataclass
class Received:
    """One request as it arrived: header names lower-cased, the raw body, ``time.time()`` at arrival."""

    headers: dict[str, str]
    body: bytes
    at: float
    verified: bool | None = None  # None: the receiver had no secret when the request arrived

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def payload(self) -> Any:  # noqa: ANN401 - whatever JSON the sender posted
        """The body parsed as JSON (an empty body is None)."""
        return json.loads(self.body) if self.body else None


def verify_signature(secret: str, headers: dict[str, str], body: bytes,
                     tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True if one of the ``v1,`` signatures matches and the timestamp is within ``tolerance_s`` of ``now``."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp = lower.get("webhook-id"), lower.get("webhook-timestamp")
    if not msg_id or not stamp or not secret.startswith("whsec_"):
        return False
    try:
        ts = int(stamp)
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (ValueError, binascii.Error):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    expected = base64.b64encode(mac).decode()
    return any(part.startswith("v1,") and hmac.compare_digest(part[3:], expected)
               for part in lower.get("webhook-signature", "").split())


class WebhookReceiver:
    """An HTTP server on ``host:port`` (port 0: a free one) recording POSTs; ``url`` is what to subscribe.

    ``keep_alive`` answers with HTTP/1.1 persistent connections, as a real receiver would (benches measuring
    latency); the default HTTP/1.0 closes each connection after its answer, so a closed receiver refuses the next
    attempt at once instead of a pooled connection still reaching a handler thread.
    """

    def __init__(self, secret: str | None = None, *, host: str = "127.0.0.1", port: int = 0, path: str = "/hook",
                 keep_alive: bool = False, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                reply = receiver._record({k.lower(): v for k, v in self.headers.items()}, body, time.time())
                if reply.hold is not None:
                    reply.hold.wait(60)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port: int = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}{path}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()

    def _record(self, headers: dict[str, str], body: bytes, at: float) -> Reply:
        with self.cond:
            secret = self.secret
            verified = None if secret is None else verify_signature(secret, headers, body, self.tolerance_s, at)
            self.requests.append(Received(headers, body, at, verified))
            reply = self.script.pop(0) if self.script else Reply()
            self.cond.notify_all()
        return reply

    def received(self) -> list[Received]:
        """A snapshot of every request so far, in arrival order."""
        with self.cond:
            return list(self.requests)

    @property
    def rejected(self) -> int:
        """Requests whose signature or timestamp did not verify against the secret."""
        with self.cond:
            return sum(1 for r in self.requests if r.verified is False)

    def wait_for(self, count: int, timeout: float = 60.0) -> list[Received]:
        """Every request once there are at least ``count``; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"receiver got {len(self.requests)} requests, expected {count}")
                self.cond.wait(left)
            return list(self.requests)

    def wait_until(self, match: Callable[[Received], bool], timeout: float,
                   alive: Callable[[], None] | None = None) -> Received | None:
        """The first request ``match`` accepts, waiting up to ``timeout`` s; None if none came.

        ``alive`` is called about once a second while waiting and may raise to give up early (e.g. the sender died).
        """
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            with self.cond:
                for request in self.requests[seen:]:
                    if match(request):
                        return request
                seen = len(self.requests)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 1.0))
            if alive is not None:
                alive()  # outside the lock: it may take a while, and deliveries keep being recorded meanwhile

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
