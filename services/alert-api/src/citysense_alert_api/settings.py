"""Alert API settings (environment prefix ``CITYSENSE_``), built by :func:`build_settings` in the entry point."""

from __future__ import annotations

from typing import Literal

from citysense_common.settings import load_settings
from citysense_common.store.settings import StoreSettings
from citysense_common.webhooks import DEFAULT_TESTS_TOPIC, IPNetwork, allowed_networks_for, parse_allowed_networks
from pydantic import Field, SecretStr, field_validator


class ApiSettings(StoreSettings):
    env: Literal["development", "production"] = Field(
        default="development",
        description="development = local stack conveniences (generated token, loopback webhooks); "
        "cluster installs set production",
    )
    webhook_allowed_networks: str | None = Field(
        default=None,
        description="comma-separated CIDRs webhooks may target despite the SSRF policy; "
        "unset = 127.0.0.0/8 in development, nothing in production",
    )
    webhook_tests_topic: str = Field(
        default=DEFAULT_TESTS_TOPIC,
        description="topic on which the API asks the notifier to send a test event to one subscription",
    )

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str | None) -> str | None:
        parse_allowed_networks(value)
        return value

    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return allowed_networks_for(self.env, self.webhook_allowed_networks)

    api_host: str = Field(default="127.0.0.1", description="listen address; 0.0.0.0 in a container")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_token: SecretStr | None = Field(
        default=None, description="bearer token for writes; unset in development = generated under data_dir"
    )
    api_cors_origins: str = Field(default="", description="comma-separated origins allowed by CORS; empty = none")
    station_offline_after_s: float = Field(
        default=300.0, gt=0, description="a station not seen for this long is shown offline"
    )
    stream_heartbeat_s: float = Field(
        default=15.0, gt=0, description="SSE comment sent this often to keep proxies open"
    )
    stream_max_clients: int = Field(default=1000, ge=1)
    readiness_timeout_s: float = Field(default=2.0, gt=0)


def build_settings(**overrides: object) -> ApiSettings:
    return load_settings(ApiSettings, **overrides)
