"""Bearer-token authentication for writes, and where the token comes from."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from citysense_common.settings import SettingsError
from fastapi import Request

from citysense_alert_api.problems import Problem
from citysense_alert_api.settings import ApiSettings

TOKEN_FILE_NAME = "api-token"  # noqa: S105 - a file name
# Tokens copied from examples; a real install must not run with them.
_PLACEHOLDERS = frozenset({
    "changeme", "change-me", "change_me", "secret", "password", "token", "admin", "test", "default",
    "example", "xxx", "replace-me", "replaceme", "citysense", "dev", "development",
})
_MIN_PRODUCTION_LENGTH = 16


def is_placeholder(token: str) -> bool:
    return token.strip().lower() in _PLACEHOLDERS or len(set(token)) <= 2


def resolve_api_token(settings: ApiSettings) -> tuple[str, Path | None]:
    """The token writes must present, and the file it was generated into (None when it came from the env).

    Development without CITYSENSE_API_TOKEN: reuse or generate ``<data_dir>/api-token`` (mode 0600).
    Production: the token is required, and placeholders or short tokens are refused.
    """
    if settings.api_token is not None:
        token = settings.api_token.get_secret_value()
        if settings.env != "development":
            if is_placeholder(token) or len(token) < _MIN_PRODUCTION_LENGTH:
                raise SettingsError(
                    "CITYSENSE_API_TOKEN looks like a placeholder or is shorter than "
                    f"{_MIN_PRODUCTION_LENGTH} characters; generate one, e.g. `python -c "
                    "'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        elif not token:
            raise SettingsError("CITYSENSE_API_TOKEN is empty; unset it to generate one, or set a real token")
        return token, None
    if settings.env != "development":
        raise SettingsError("CITYSENSE_API_TOKEN is required when CITYSENSE_ENV=production")
    path = settings.data_dir / TOKEN_FILE_NAME
    if path.exists():
        token = path.read_text().strip()
        if token:
            path.chmod(0o600)
            return token, path
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + mode at creation: the token is never readable by others, not even for an instant.
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    tmp.replace(path)
    return token, path


class TokenChecker:
    """FastAPI dependency: 401 without a bearer token, 403 with a wrong one (constant-time compare)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def __call__(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, offered = header.partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            raise Problem(
                401, "Authentication required",
                "This operation needs 'Authorization: Bearer <token>' (the token is CITYSENSE_API_TOKEN; the local "
                "stack prints it and keeps it in <data dir>/api-token).",
                headers={"WWW-Authenticate": 'Bearer realm="citysense"'},
            )
        if not hmac.compare_digest(offered.strip().encode(), self._token):
            raise Problem(403, "Forbidden", "The bearer token is not valid for this API.")
