"""Which stations a citizen's area covers: a circle of ``radius_km`` around (lat, lon) on the Earth's surface."""

from __future__ import annotations

import math
from typing import Protocol

EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
RADIUS_MIN_KM = 0.1
RADIUS_MAX_KM = 25.0


class Circle(Protocol):
    """What ``covers`` needs of an area; ``store.AreaSubscription`` has it."""

    @property
    def lat(self) -> float: ...
    @property
    def lon(self) -> float: ...
    @property
    def radius_km(self) -> float: ...


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine; accurate to well under a metre at city scale, ~0.5 % globally)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi, dlambda = phi2 - phi1, math.radians(lon2 - lon1)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlambda / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def covers(area: Circle, lat: float | None, lon: float | None) -> bool:
    """True when (lat, lon) lies in the area's circle, its edge included; a place without a position never does."""
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return False
    return distance_km(area.lat, area.lon, lat, lon) <= area.radius_km
