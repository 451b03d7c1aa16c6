"""Alert API settings (environment prefix ``CITYSENSE_``), built by :func:`build_settings` in the entry point."""

from __future__ import annotations

from urllib.parse import urlsplit

from citysense_common.citizen.settings import CitizenSettings, load_citizen_settings
from citysense_common.settings import load_settings
from citysense_common.warnings.settings import PublicWarningSettings
from citysense_common.webhook_settings import WebhookSettings
from pydantic import Field, SecretStr, field_validator

OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTRIBUTION = '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'


def tile_origin(url: str) -> str:
    """``scheme://host[:port]`` of a tile URL template, as a CSP source; ValueError when it is not one."""
    parts = urlsplit(url.replace("{s}.", "a.", 1) if url.count("{s}") <= 1 else url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"map_tile_url must be an http(s) URL, got {url!r}")
    if any(c in parts.netloc for c in "{}@") or parts.fragment:
        raise ValueError("map_tile_url: only {s}. may stand before the host; no credentials or fragment")
    missing = [p for p in ("{z}", "{x}", "{y}") if p not in parts.path + parts.query]
    if missing:
        raise ValueError(f"map_tile_url must contain {', '.join(missing)}, got {url!r}")
    host = parts.netloc.lower()
    if url.split("://", 1)[1].startswith("{s}."):
        host = "*." + host.removeprefix("a.")
    return f"{parts.scheme}://{host}"


class ApiSettings(WebhookSettings, PublicWarningSettings):
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
    stream_max_clients: int = Field(default=1000, ge=1, description="live streams (SSE) open at once, per process")
    stream_max_per_client: int = Field(
        default=10, ge=1, description="live streams one client address may hold open at once (429 beyond)"
    )
    api_forwarded_allow_ips: str = Field(
        default="",
        description="addresses or CIDRs of reverse proxies (e.g. the ingress controller's pods) whose "
                    "X-Forwarded-For names the client; empty = the peer address is the client (it is what per-client "
                    "limits count)",
    )
    stream_max_lifetime_s: float = Field(
        default=3600.0, gt=0, description="a live stream ends after this long; browsers reconnect by themselves"
    )
    api_max_body_bytes: int = Field(
        default=128 * 1024, ge=1024,
        description="largest request body accepted (413 beyond), checked before routing and authentication",
    )
    api_limit_concurrency: int = Field(
        default=1200, ge=1,
        description="connections and requests one process serves at once (503 beyond); keep above "
                    "stream_max_clients",
    )
    readiness_timeout_s: float = Field(default=2.0, gt=0)
    citizen: CitizenSettings = Field(
        default_factory=load_citizen_settings,
        description="citizens' self-service area subscriptions: read from the CITYSENSE_CITIZEN_* variables "
                    "(citysense_common.citizen.settings), shared with the notifier",
    )
    api_store_timeout_s: float = Field(
        default=5.0, gt=0,
        description="longest wait for one store call before the request gets a 503 (the call runs off the event "
                    "loop, so a slow store never holds up other requests); /readyz reports the store slow meanwhile",
    )
    api_alert_cache_s: float = Field(
        default=1.0, ge=0, le=60,
        description="longest time a cached GET /v1/alerts page is served when no alert event arrives to drop it "
                    "(pages are dropped as soon as this process's alert stream sees any event); 0 = no cache",
    )
    map_tile_url: str = Field(
        default=OSM_TILES,
        description="background map of the citizen page: a tile URL template with {z}, {x} and {y} (and {s} for "
                    "subdomains); the page's Content-Security-Policy allows images from its host and no other; "
                    "empty = no background map (stations on a plain background)",
    )
    map_tile_attribution: str = Field(
        default=OSM_ATTRIBUTION,
        description="the tiles' attribution, shown in the map's corner as their licence requires (HTML: text and "
                    "links)",
    )
    map_tile_max_zoom: int = Field(default=19, ge=1, le=22, description="highest zoom level the tile server serves")

    @field_validator("map_tile_url")
    @classmethod
    def _tile_url(cls, value: str) -> str:
        value = value.strip()
        if value:
            tile_origin(value)  # raises ValueError with a message naming what is wrong
        return value

    @property
    def map_tile_origin(self) -> str | None:
        """The tiles' origin as a CSP source (``https://*.host`` for ``{s}.host``), or None without tiles."""
        return tile_origin(self.map_tile_url) if self.map_tile_url else None


def build_settings(**overrides: object) -> ApiSettings:
    return load_settings(ApiSettings, **overrides)
