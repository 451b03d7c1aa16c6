"""Alert API settings (environment prefix ``CITYSENSE_``), built by :func:`build_settings` in the entry point."""

from __future__ import annotations

from citysense_common.settings import load_settings
from citysense_common.webhook_settings import WebhookSettings
from pydantic import Field, SecretStr


class ApiSettings(WebhookSettings):
    api_host: str = Field(default="127.0.0.1", description="listen address; 0.0.0.0 in a container")
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes (one per core)")
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
    api_alert_cache_s: float = Field(
        default=1.0, ge=0, le=60,
        description="longest time a cached GET /v1/alerts page is served when no alert event arrives to drop it "
                    "(pages are dropped as soon as this process's alert stream sees any event); 0 = no cache",
    )


def build_settings(**overrides: object) -> ApiSettings:
    return load_settings(ApiSettings, **overrides)
