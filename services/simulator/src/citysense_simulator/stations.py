"""Stable station identities and coordinates, derived from the instance identity alone.

N replicas (pods of a StatefulSet, or processes started with different ``CITYSENSE_INSTANCE_ID``s) give N × stations
distinct station ids with no coordination; a restarted replica gets the same ids and coordinates back.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass

from citysense_common.contract import STATION_ID_PATTERN

# Berlin's administrative bounding box (min_lon, min_lat, max_lon, max_lat).
DEFAULT_BBOX = (13.0884, 52.3383, 13.7612, 52.6755)
_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Station:
    station_id: str
    lat: float
    lon: float


def instance_key(instance_id: str | None) -> str:
    """A short key for this replica: the StatefulSet ordinal when there is one, else a sanitised identity."""
    identity = instance_id or socket.gethostname()
    match = _ORDINAL.search(identity)
    if match:
        return match.group(1)
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", identity)[:40]
    return cleaned or "0"


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    try:
        min_lon, min_lat, max_lon, max_lat = (float(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"bbox must be 'minLon,minLat,maxLon,maxLat', got {text!r}") from None
    if not (-180 <= min_lon < max_lon <= 180 and -90 <= min_lat < max_lat <= 90):
        raise ValueError(f"bbox {text!r} is not a valid lon/lat box (min < max, within ±180/±90)")
    return min_lon, min_lat, max_lon, max_lat


def _unit_pair(station_id: str) -> tuple[float, float]:
    digest = hashlib.blake2b(station_id.encode(), digest_size=16).digest()
    a = int.from_bytes(digest[:8], "big") / 2**64
    b = int.from_bytes(digest[8:], "big") / 2**64
    return a, b


def make_stations(count: int, instance_id: str | None = None, prefix: str = "st",
                  bbox: tuple[float, float, float, float] = DEFAULT_BBOX) -> list[Station]:
    key = instance_key(instance_id)
    min_lon, min_lat, max_lon, max_lat = bbox
    stations = []
    for index in range(count):
        station_id = f"{prefix}-{key}-{index:05d}"
        if not re.fullmatch(STATION_ID_PATTERN, station_id):
            raise ValueError(f"station id {station_id!r} is not valid; shorten the prefix or instance id")
        u, v = _unit_pair(station_id)
        stations.append(Station(station_id, round(min_lat + v * (max_lat - min_lat), 6),
                                round(min_lon + u * (max_lon - min_lon), 6)))
    return stations
