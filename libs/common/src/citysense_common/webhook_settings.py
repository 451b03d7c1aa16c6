"""Settings every service that touches webhooks shares (the API checks URLs, the notifier delivers to them)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from citysense_common.store.settings import StoreSettings
from citysense_common.webhooks import (
    DEFAULT_TESTS_TOPIC,
    IPNetwork,
    allowed_networks_for,
    allowed_ports_for,
    parse_allowed_networks,
    parse_ports,
)


class WebhookSettings(StoreSettings):
    env: Literal["development", "production"] = Field(
        default="development",
        description="development = local stack conveniences (generated token, webhooks to 127.0.0.0/8); "
        "cluster installs set production",
    )
    webhook_allowed_networks: str | None = Field(
        default=None,
        description="comma-separated CIDRs webhooks may target despite the SSRF policy; unset = 127.0.0.0/8 in "
        "development, nothing in production; empty = nothing",
    )
    webhook_ports: str | None = Field(
        default=None,
        description="comma-separated TCP ports webhooks to public addresses may use (allowed networks: any); unset = "
        "80,443 in production (what the chart's NetworkPolicy lets out), any in development",
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

    @field_validator("webhook_ports")
    @classmethod
    def _ports_parse(cls, value: str | None) -> str | None:
        if value is not None:
            parse_ports(value)
        return value

    def webhook_ports_allowed(self) -> frozenset[int] | None:
        return allowed_ports_for(self.env, self.webhook_ports)

    def allowed_networks(self) -> tuple[IPNetwork, ...]:
        return allowed_networks_for(self.env, self.webhook_allowed_networks)
