"""Settings of the citizens' subscriptions (environment prefix ``CITYSENSE_CITIZEN_``), shared by the alert API
and the notifier: both must use the same secret (links the notifier signs, the API verifies) and public URL."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from citysense_common.citizen.tokens import Purpose
from citysense_common.settings import SettingsError

ENV_PREFIX = "CITYSENSE_CITIZEN_"
SECRET_FILE_NAME = "citizen-secret"  # noqa: S105 - a file name
MIN_SECRET_LENGTH = 32
DEFAULT_MAIL_TOPIC = "citysense.citizen-mail"


class CitizenSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    enabled: bool = Field(
        default=True, description="the public subscribe, confirm and unsubscribe endpoints and the citizens' email; "
                                  "false = those endpoints answer 404 and no citizen email is sent")
    secret: SecretStr | None = Field(
        default=None,
        description="key that signs the confirm and unsubscribe links (HMAC-SHA256), the same for the API and the "
                    f"notifier, at least {MIN_SECRET_LENGTH} characters; unset in development = generated into "
                    f"<data_dir>/{SECRET_FILE_NAME}; required in production. Changing it invalidates every link "
                    "already sent")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="absolute base URL of the citizen page as citizens reach it (e.g. https://air.city.example); "
                    "email links are {public_url}/citizen/confirm?token=... and /citizen/unsubscribe?token=...")
    confirm_hours: float = Field(default=48.0, gt=0, le=24 * 30, description="a confirmation link expires after this")
    unsubscribe_days: int = Field(default=365, ge=1, le=3650,
                                  description="an unsubscribe link (in every email) expires after this")
    mail_topic: str = Field(default=DEFAULT_MAIL_TOPIC,
                            description="Kafka topic on which the API asks the notifier for a confirmation email")
    rate_per_address: int = Field(
        default=3, ge=1, description="subscribe requests for one email address per rate window (429 beyond), so "
                                     "nobody can flood someone else's inbox with confirmation emails")
    rate_per_client: int = Field(default=10, ge=1,
                                 description="subscribe requests from one client address per rate window (429 beyond)")
    rate_window_s: float = Field(default=3600.0, gt=0, le=7 * 86400, description="length of the rate window")
    response_floor_s: float = Field(
        default=0.4, ge=0, le=5,
        description="the subscribe endpoint answers no sooner than this, whatever it did (created a subscription, "
                    "sent a confirmation again, or nothing), so its timing does not tell who is subscribed")
    max_areas_per_address: int = Field(
        default=5, ge=1, le=100, description="areas one email address may hold (pending and confirmed); a further "
                                             "subscribe request is answered as usual but creates nothing")

    @field_validator("public_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"must be an absolute http(s) URL such as https://air.city.example, got {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must be a base URL without credentials, query or fragment")
        return value

    @field_validator("mail_topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    def token_lifetime(self, purpose: Purpose) -> timedelta:
        return timedelta(hours=self.confirm_hours) if purpose == "confirm" else timedelta(days=self.unsubscribe_days)

    def link(self, page: str, token: str) -> str:
        """The absolute URL of a citizen page (``confirm`` or ``unsubscribe``) with its token: for email bodies."""
        return f"{self.public_url}/citizen/{page}?token={token}"

    def one_click_unsubscribe_url(self, token: str) -> str:
        """The URL for the ``List-Unsubscribe`` header: mail clients POST ``List-Unsubscribe=One-Click`` to it
        (RFC 8058) and the API removes the subscription without a page in between."""
        return f"{self.public_url}/v1/citizen/unsubscribe?token={token}"

    def resolve_secret(self, env: str, data_dir: Path) -> str:
        """The signing secret: the setting, else (development only) ``<data_dir>/citizen-secret``, generated once
        with mode 0600 so the API and the notifier of one local stack share it. Raises SettingsError otherwise."""
        if self.secret is not None:
            value = self.secret.get_secret_value()
            if len(value) < MIN_SECRET_LENGTH or len(set(value)) <= 2:
                raise SettingsError(
                    f"{ENV_PREFIX}SECRET must be at least {MIN_SECRET_LENGTH} random characters; generate one, e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
            return value
        if env != "development":
            raise SettingsError(f"{ENV_PREFIX}SECRET is required when CITYSENSE_ENV=production (or set "
                                f"{ENV_PREFIX}ENABLED=false to turn citizen subscriptions off)")
        return _read_or_create(data_dir / SECRET_FILE_NAME)


def _read_or_create(path: Path) -> str:
    if path.exists():
        value = path.read_text().strip()
        if len(value) >= MIN_SECRET_LENGTH:
            return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    # O_EXCL + mode at creation: never readable by others. A process starting at the same moment may win the
    # rename; every process then reads back the file's content, so all of them use the one secret on disk.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    try:
        os.link(tmp, path)  # fails when another process created it meanwhile: keep theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    stored = path.read_text().strip()
    if len(stored) < MIN_SECRET_LENGTH:
        raise SettingsError(f"{path} holds no usable secret; delete it to generate a new one")
    return stored


def load_citizen_settings(**overrides: object) -> CitizenSettings:
    """Build from the environment (plus explicit overrides) with an error naming the variable to fix."""
    try:
        return CitizenSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [f"{ENV_PREFIX}{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
