"""Signed pagination cursors: the store's cursor wrapped with the query it belongs to and an HMAC.

A store cursor holds raw positions (timestamps, ids, Cassandra paging state) that the store binds into its queries;
a client that builds one by hand could make the store fail (a 503) or the API crash (a 500). The API therefore only
accepts cursors it issued: ``<payload>.<signature>``, where the payload (base64url JSON) names the query and carries
the store cursor, and the signature is an HMAC-SHA256 under a key derived from the API token. Every replica and
worker shares the token, so any of them accepts the others' cursors; rotating the token ends open paginations
(clients start again from the first page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from typing import Any

from citysense_alert_api.problems import Problem

_KEY_LABEL = b"citysense alert API pagination cursors v1"
_SIG_BYTES = 16
_MAX_STORE_CURSOR = 2048
# Milliseconds since the epoch of 0001-01-01 and 9999-12-31, the range a datetime holds.
_MIN_MS, _MAX_MS = -62_135_596_800_000, 253_402_300_799_000


def invalid_cursor(reason: str) -> Problem:
    return Problem(400, "Invalid cursor", f"{reason}; start again without ?cursor= to get the first page.",
                   type_="urn:citysense:problem:invalid-cursor")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorSigner:
    def __init__(self, token: str) -> None:
        self._key = hmac.new(token.encode(), _KEY_LABEL, hashlib.sha256).digest()

    @staticmethod
    def _query_key(query: tuple[object, ...]) -> str:
        return hashlib.sha256(repr(query).encode()).hexdigest()[:16]

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:_SIG_BYTES])

    def seal(self, query: tuple[object, ...], store_cursor: str, **fields: int) -> str:
        """A cursor for the page after this one of ``query`` (the route and its filters)."""
        doc = {"q": self._query_key(query), "s": store_cursor, **fields}
        payload = _b64(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())
        return f"{payload}.{self._sign(payload)}"

    def open(self, cursor: str, query: tuple[object, ...], int_fields: tuple[str, ...] = ()) -> dict[str, Any]:
        """The fields of a cursor this API issued for ``query``: ``s`` (the store cursor) and ``int_fields``.

        Raises a 400 problem for anything else: not ours, altered, another query's, or fields of the wrong type.
        """
        payload, dot, signature = cursor.rpartition(".")
        if not dot or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            raise invalid_cursor("The cursor was not issued by this API or has been altered (or the API token has "
                                 "changed since)")
        try:
            doc = json.loads(_unb64(payload))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise invalid_cursor("The cursor is malformed") from None
        if not isinstance(doc, dict) or doc.get("q") != self._query_key(query):
            raise invalid_cursor("The cursor belongs to a different query (other filters or another resource)")
        store_cursor = doc.get("s")
        if not isinstance(store_cursor, str) or not 0 < len(store_cursor) <= _MAX_STORE_CURSOR:
            raise invalid_cursor("The cursor is malformed")
        for name in int_fields:
            value = doc.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or not _MIN_MS <= value <= _MAX_MS:
                raise invalid_cursor("The cursor is malformed")
        return doc
