"""Geohash (base-32 interleaved latitude/longitude bits), as in Gustavo Niemeyer's original scheme.

A geohash names a rectangular cell; every extra character narrows it by a factor of 32. At 5 characters a cell is
about 4.9 km by 4.9 km at the equator (narrower east-west towards the poles): the size of a city district, which is
what the notifier's MQTT area topics use. Cells that share a prefix lie inside the shorter prefix's cell.
"""

from __future__ import annotations

import math

ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
_INDEX = {char: i for i, char in enumerate(ALPHABET)}


def encode(lat: float, lon: float, precision: int = 5) -> str:
    """The geohash of ``precision`` characters (1-12) of the cell that holds the point (WGS 84 degrees).

    A point on a cell's edge belongs to the cell north or east of it, so latitude 90 and longitude 180 fall in the
    last cell.
    """
    if not 1 <= precision <= 12:
        raise ValueError(f"precision must be 1-12, not {precision}")
    if not (math.isfinite(lat) and -90 <= lat <= 90):
        raise ValueError(f"latitude must be within -90..90, not {lat}")
    if not (math.isfinite(lon) and -180 <= lon <= 180):
        raise ValueError(f"longitude must be within -180..180, not {lon}")
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars = []
    bits = value = 0
    even = True  # bits alternate, longitude first
    while len(chars) < precision:
        span, point = (lon_range, lon) if even else (lat_range, lat)
        mid = (span[0] + span[1]) / 2
        value <<= 1
        if point >= mid:
            value |= 1
            span[0] = mid
        else:
            span[1] = mid
        even = not even
        bits += 1
        if bits == 5:
            chars.append(ALPHABET[value])
            bits = value = 0
    return "".join(chars)


def bounds(geohash: str) -> tuple[float, float, float, float]:
    """The cell a geohash names: ``(south, west, north, east)`` in degrees."""
    if not geohash:
        raise ValueError("empty geohash")
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    even = True
    for char in geohash.lower():
        if char not in _INDEX:
            raise ValueError(f"not a geohash character: {char!r}")
        value = _INDEX[char]
        for shift in range(4, -1, -1):
            span = lon_range if even else lat_range
            mid = (span[0] + span[1]) / 2
            if value >> shift & 1:
                span[0] = mid
            else:
                span[1] = mid
            even = not even
    return lat_range[0], lon_range[0], lat_range[1], lon_range[1]
