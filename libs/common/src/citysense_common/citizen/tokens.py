"""Signed, expiring, URL-safe tokens for the links in citizens' email (confirm, unsubscribe).

A token is ``<payload>.<mac>``, both base64url without padding: the payload is ``purpose:subscription_id:expiry``
(expiry in Unix seconds) and the MAC is HMAC-SHA256 over a domain-separation prefix and the payload, keyed with
``CITYSENSE_CITIZEN_SECRET`` (the API and the notifier share it). The purpose is signed, so an unsubscribe token
cannot confirm and a confirm token cannot unsubscribe. Nothing in a token is secret (the id is random and says
nothing about the address); what the token proves is that citysense issued it for this purpose and id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import SecretStr

Purpose = Literal["confirm", "unsubscribe"]
PURPOSES: tuple[Purpose, ...] = ("confirm", "unsubscribe")
_DOMAIN = b"citysense-citizen-link-v1\x00"
MAX_TOKEN_LENGTH = 512  # far above any token sign() makes; longer input is refused before decoding it


class TokenError(ValueError):
    """A link token that must not be honoured; the message says why in words a citizen understands."""


class InvalidToken(TokenError):
    """Malformed, or not signed with this installation's secret (altered, truncated, or from elsewhere)."""


class ExpiredToken(TokenError):
    pass


class WrongPurpose(TokenError):
    """A valid token for another kind of link (e.g. an unsubscribe token on the confirm page)."""


def _key(secret: str | bytes | SecretStr) -> bytes:
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("the token secret must not be empty")
    return key


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, _DOMAIN + payload, hashlib.sha256).digest()


def sign(purpose: Purpose, subscription_id: str, expires_at: datetime, secret: str | bytes | SecretStr) -> str:
    """A token for ``purpose`` on ``subscription_id`` that ``verify`` accepts until ``expires_at``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}; one of {PURPOSES}")
    if not subscription_id or ":" in subscription_id:
        raise ValueError("a subscription id must be non-empty and contain no ':'")
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    payload = f"{purpose}:{subscription_id}:{int(expires_at.timestamp())}".encode()
    return f"{_b64(payload)}.{_b64(_mac(_key(secret), payload))}"


def issue(purpose: Purpose, subscription_id: str, secret: str | bytes | SecretStr, now: datetime,
          lifetime: timedelta) -> str:
    """``sign`` with the expiry ``now + lifetime`` (see ``CitizenSettings.token_lifetime``)."""
    return sign(purpose, subscription_id, now + lifetime, secret)


def verify(token: str, purpose: Purpose, secret: str | bytes | SecretStr, now: datetime) -> str:
    """The subscription id the token was signed for; raises InvalidToken, WrongPurpose or ExpiredToken.

    The signature is checked first (in constant time), so nothing about an unsigned token's content is believed.
    """
    key = _key(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise InvalidToken("This link is not valid: it is incomplete or was changed. Copy the whole link from the "
                           "email, or start again.")
    encoded_payload, encoded_mac = token.split(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (binascii.Error, ValueError):
        raise InvalidToken("This link is not valid: it is incomplete or was changed. Copy the whole link from the "
                           "email, or start again.") from None
    if not hmac.compare_digest(mac, _mac(key, payload)):
        raise InvalidToken("This link is not valid: it is incomplete, was changed, or was not issued by this "
                           "service. Copy the whole link from the email, or start again.")
    try:
        signed_purpose, subscription_id, expiry = payload.decode().split(":")
        expires_at = datetime.fromtimestamp(int(expiry), UTC)
    except (UnicodeDecodeError, ValueError, OverflowError, OSError):
        raise InvalidToken("This link is not valid.") from None
    if signed_purpose != purpose:
        raise WrongPurpose(f"This link is for another step ({signed_purpose}), not for this page ({purpose}).")
    if (now if now.tzinfo is not None else now.replace(tzinfo=UTC)) >= expires_at:
        raise ExpiredToken("This link has expired. Subscribe again to get a new one.")
    return subscription_id
