"""Outgoing webhooks: Standard Webhooks signing and SSRF protection, shared by the alert API and the notifier.

The API checks a subscriber URL when the subscription is created or changed (a clear 422), and the notifier
checks it again right before every delivery (DNS can change in between). Both call :func:`check_webhook_url`
here, so the policy exists exactly once.

Signing follows https://www.standardwebhooks.com: the signed content is ``{webhook-id}.{webhook-timestamp}.{body}``,
HMAC-SHA256 keyed with the base64-decoded part of the ``whsec_`` secret, sent as ``webhook-signature: v1,<b64>``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from citysense_common.contract import (
    STATION_ID_PATTERN,
    AlertEvent,
    AlertKind,
    AlertState,
    Location,
    MetricName,
    Severity,
    StationId,
)

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
_SECRET_BYTES = 32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------------------------------- signing


def generate_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes (what standardwebhooks expects)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook signing secret starts with whsec_")
    return base64.b64decode(secret[len(SECRET_PREFIX):])


def webhook_id_for(subscription_id: str, event_id: str) -> str:
    """The ``webhook-id`` of one event for one subscriber; deterministic so a redelivery keeps it.

    Receivers de-duplicate on it, so it must survive notifier restarts without being stored first.
    """
    digest = hashlib.sha256(f"{subscription_id}\x00{event_id}".encode()).hexdigest()[:32]
    return f"msg_{digest}"


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256>``."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(_secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secret: str, webhook_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers for one delivery attempt (a fresh timestamp per attempt, the same webhook-id every time)."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
    }


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """Receiver-side check (used by our own tooling; subscribers use any Standard Webhooks library)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        ts = int(lower["webhook-timestamp"])
        expected = sign(secret, lower["webhook-id"], ts, body).split(",", 1)[1]
    except (KeyError, ValueError):
        return False
    if abs(time.time() - ts) > tolerance_s:
        return False
    offered = [part.split(",", 1)[1] for part in lower.get("webhook-signature", "").split() if part.startswith("v1,")]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


# ------------------------------------------------------------------------------------------------------ SSRF


class UnsafeWebhookURL(ValueError):
    """The URL must not be called: the message says why, in words a subscriber can act on."""


# Ranges that ipaddress' is_global does not name on every Python version, listed so the reason is explicit.
_NAMED_RANGES: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.169.254/32"), "a cloud metadata service address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "a cloud metadata service address"),
    (ipaddress.ip_network("100.100.100.200/32"), "a cloud metadata service address"),
    (ipaddress.ip_network("100.64.0.0/10"), "a carrier-grade NAT (shared, RFC 6598) address"),
    (ipaddress.ip_network("fc00::/7"), "an IPv6 unique local (private) address"),
    (ipaddress.ip_network("192.0.0.0/24"), "an IETF protocol assignment (reserved) address"),
    (ipaddress.ip_network("198.18.0.0/15"), "a benchmarking (reserved) address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "a local-use NAT64 address"),
)
_METADATA_HOSTNAMES = frozenset({"metadata", "metadata.google.internal", "metadata.goog", "instance-data"})


def parse_allowed_networks(value: str | Iterable[str] | None) -> tuple[IPNetwork, ...]:
    """``"127.0.0.0/8, ::1/128"`` -> networks; raises ValueError naming the bad entry."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"{part!r} is not a network in CIDR notation, e.g. 127.0.0.0/8") from None
    return tuple(networks)


_IPV4_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def parse_ipv4_any_spelling(host: str) -> ipaddress.IPv4Address | None:
    """Parse IPv4 the way inet_aton (and so curl, browsers, getaddrinfo) does: 1-4 parts, decimal, octal or hex.

    ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1`` all mean 127.0.0.1; a check that only
    understands dotted decimal would wave them through. Returns None when ``host`` is not such a number.
    """
    host = host.rstrip(".")
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.match(p) for p in parts):
        return None
    try:
        numbers = [int(p, 16) if p[:2].lower() == "0x" else int(p, 8) if len(p) > 1 and p[0] == "0" else int(p)
                   for p in (p if p.lower() != "0x" else "0x0" for p in parts)]
    except ValueError:
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address hidden in an IPv4-mapped, IPv4-compatible, 6to4 or NAT64 IPv6 address."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = int(ip)
    if packed >> 32 == 0 and packed > 1:  # ::a.b.c.d, deprecated IPv4-compatible (:: and ::1 excluded)
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def _inside(ip: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def refusal_reason(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook must not go to ``ip`` (None = fine). Allowed networks win over every other rule."""
    if _inside(ip, allowed):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = refusal_reason(inner, allowed)
            return None if reason is None else f"an IPv6 spelling of {inner}, {reason}"
    for net, reason in _NAMED_RANGES:
        if ip.version == net.version and ip in net:
            return reason
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_reserved or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a reserved address"
    if ip.is_private:
        return "a private-network address"
    if not ip.is_global:
        return "not a public internet address"
    return None


Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (the connection may use any of them, so all must pass)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]


@dataclass(frozen=True)
class CheckedURL:
    url: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return parse_ipv4_any_spelling(host)


def _split(url: str) -> tuple[str, int]:
    if len(url) > 2048:
        raise UnsafeWebhookURL("the URL is longer than 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeWebhookURL(f"the URL cannot be parsed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeWebhookURL("the URL must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeWebhookURL("the URL has no host name")
    if parts.username is not None or parts.password is not None:
        raise UnsafeWebhookURL("the URL must not contain a user name or password (user@host); "
                               "authenticate with the signature instead")
    if parts.fragment:
        raise UnsafeWebhookURL("the URL must not contain a #fragment")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def check_webhook_url(url: str, allowed: Sequence[IPNetwork] = (),
                            resolver: Resolver = resolve_host, ports: Collection[int] | None = None) -> CheckedURL:
    """Refuse URLs that point at this machine, the cluster, the cloud metadata service or other non-public hosts.

    Raises :class:`UnsafeWebhookURL` with a reason a subscriber understands. The host is resolved and every
    address must pass; addresses inside ``allowed`` (CITYSENSE_WEBHOOK_ALLOWED_NETWORKS) are always accepted, on
    any port. A public address must use one of ``ports`` (CITYSENSE_WEBHOOK_PORTS; None = any port).
    """
    host, port = _split(url)
    hint = " (an operator can allow it with CITYSENSE_WEBHOOK_ALLOWED_NETWORKS)"
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        if host.lower().rstrip(".") in _METADATA_HOSTNAMES or host.lower().endswith(".internal"):
            raise UnsafeWebhookURL(f"the host {host!r} is a cloud metadata / internal name; webhooks must go to "
                                   "a public address")
        try:
            addresses = await resolver(host, port)
        except (OSError, UnicodeError) as exc:
            raise UnsafeWebhookURL(f"the host {host!r} cannot be resolved ({exc})") from None
        if not addresses:
            raise UnsafeWebhookURL(f"the host {host!r} resolves to no address")
    for address in addresses:
        reason = refusal_reason(address, allowed)
        if reason is not None:
            shown = host if literal is None else f"{host}"
            via = "" if literal is not None and str(literal) == host.strip("[]") else f" ({address})"
            raise UnsafeWebhookURL(f"webhooks must go to a public address; {shown}{via} is {reason}{hint}")
        if ports is not None and port not in ports and not _inside(address, allowed):
            listed = ", ".join(str(p) for p in sorted(ports)) or "none"
            raise UnsafeWebhookURL(f"webhooks may use the ports {listed}, not {port} (an operator can change that "
                                   "with CITYSENSE_WEBHOOK_PORTS)")
    return CheckedURL(url=url, host=host, port=port, addresses=tuple(addresses))


def check_webhook_url_sync(url: str, allowed: Sequence[IPNetwork] = ()) -> CheckedURL:
    """Blocking variant for callers outside an event loop."""
    return asyncio.run(check_webhook_url(url, allowed))


# --------------------------------------------------------------------------------------- policy and test requests

# What a development (local stack) install may deliver to; a production (cluster) install allows nothing.
DEVELOPMENT_ALLOWED_NETWORKS = "127.0.0.0/8"
DEFAULT_TESTS_TOPIC = "citysense.webhook-tests"


# The ports a production install delivers to public addresses on: those its NetworkPolicy lets out (the chart's
# networkPolicy.webhookPorts sets CITYSENSE_WEBHOOK_PORTS from the same list).
PRODUCTION_WEBHOOK_PORTS = "80,443"


def parse_ports(value: str) -> frozenset[int]:
    """``"80, 443"`` -> {80, 443}; raises ValueError naming the bad entry."""
    ports = set()
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 65535:
            raise ValueError(f"{part!r} is not a TCP port (1-65535)")
        ports.add(int(part))
    return frozenset(ports)


def allowed_ports_for(env: str, configured: str | None) -> frozenset[int] | None:
    """CITYSENSE_WEBHOOK_PORTS when set, else 80 and 443 in production and any port (None) in development."""
    if configured is None:
        return parse_ports(PRODUCTION_WEBHOOK_PORTS) if env == "production" else None
    return parse_ports(configured)


def allowed_networks_for(env: str, configured: str | None) -> tuple[IPNetwork, ...]:
    """CITYSENSE_WEBHOOK_ALLOWED_NETWORKS when set (even empty), else the default of the environment."""
    if configured is None:
        return parse_allowed_networks(DEVELOPMENT_ALLOWED_NETWORKS if env == "development" else "")
    return parse_allowed_networks(configured)


@dataclass(frozen=True)
class WebhookTestRequest:
    """``POST /v1/subscriptions/{id}/test``: the API writes this to the tests topic, the notifier delivers it.

    Going through Kafka and the notifier (rather than the API calling the URL itself) tests the real path:
    same SSRF check, signing, retries and delivery log.
    """

    subscription_id: str
    event_id: str
    requested_at: str  # RFC 3339

    def to_json(self) -> bytes:
        return json.dumps({"subscription_id": self.subscription_id, "event_id": self.event_id,
                           "requested_at": self.requested_at}, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> WebhookTestRequest:
        doc = json.loads(raw)
        return cls(str(doc["subscription_id"]), str(doc["event_id"]), str(doc["requested_at"]))


# ------------------------------------------------------------------------------------------ subscription filters


_EARTH_RADIUS_M = 6_371_008.8


class SubscriptionFilters(BaseModel):
    """Which alert events a subscriber receives. Every filter given must match; an empty filter set matches all.

    The API validates subscriptions with this model and the notifier matches events with :meth:`matches`, so
    both agree on what a filter means.
    """

    model_config = ConfigDict(extra="forbid")

    station_ids: list[StationId] | None = Field(
        default=None, min_length=1, max_length=1000, description=f"only these stations ({STATION_ID_PATTERN})"
    )
    bbox: list[float] | None = Field(
        default=None, min_length=4, max_length=4,
        description="[min_lon, min_lat, max_lon, max_lat]: only stations inside this box",
    )
    point: Location | None = Field(default=None, description="centre of a circle; needs radius_m")
    radius_m: float | None = Field(default=None, gt=0, le=1_000_000, description="circle radius in metres")
    metrics: list[MetricName] | None = Field(default=None, min_length=1, max_length=100)
    kinds: list[AlertKind] | None = Field(default=None, min_length=1)
    min_severity: Severity | None = Field(default=None, description="info < warning < critical")
    states: list[AlertState] | None = Field(default=None, min_length=1, description="open, update, resolved")

    @model_validator(mode="after")
    def _consistent(self) -> SubscriptionFilters:
        if (self.point is None) != (self.radius_m is None):
            raise ValueError("point and radius_m go together: give both (a circle) or neither")
        if self.bbox is not None and self.point is not None:
            raise ValueError("give either bbox or point + radius_m, not both")
        if self.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = self.bbox
            if not all(math.isfinite(v) for v in self.bbox):
                raise ValueError("bbox values must be finite numbers")
            lons_ok = -180 <= min_lon <= 180 and -180 <= max_lon <= 180
            if not (lons_ok and -90 <= min_lat <= 90 and -90 <= max_lat <= 90):
                raise ValueError("bbox longitudes must be within -180..180 and latitudes within -90..90")
            if min_lon > max_lon or min_lat > max_lat:
                raise ValueError("bbox must be [min_lon, min_lat, max_lon, max_lat] with min <= max")
        return self

    def matches(self, event: AlertEvent) -> bool:
        if self.station_ids is not None and event.station_id not in self.station_ids:
            return False
        if self.metrics is not None and event.metric not in self.metrics:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.states is not None and event.state not in self.states:
            return False
        if self.min_severity is not None and event.severity.rank < self.min_severity.rank:
            return False
        if self.bbox is not None or self.point is not None:
            if event.location is None:
                return False  # a geographic filter cannot vouch for an event with no location
            if self.bbox is not None:
                min_lon, min_lat, max_lon, max_lat = self.bbox
                if not (min_lon <= event.location.lon <= max_lon and min_lat <= event.location.lat <= max_lat):
                    return False
            if self.point is not None and self.radius_m is not None:
                if haversine_m(self.point, event.location) > self.radius_m:
                    return False
        return True


def haversine_m(a: Location, b: Location) -> float:
    """Great-circle distance in metres."""
    lat1, lat2 = math.radians(a.lat), math.radians(b.lat)
    dlat, dlon = lat2 - lat1, math.radians(b.lon - a.lon)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * _EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
