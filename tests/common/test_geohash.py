"""Geohash encoding against published values, and the cells it names."""

from __future__ import annotations

import math
import random

import pytest
from citysense_common.geohash import ALPHABET, bounds, encode


@pytest.mark.parametrize(("lat", "lon", "precision", "expected"), [
    (42.6, -5.6, 5, "ezs42"),                      # Wikipedia's worked example
    (57.64911, 10.40744, 11, "u4pruydqqvj"),       # Wikipedia's example of a longer hash
    (57.648, 10.410, 6, "u4pruy"),
    (-25.38262, -49.26561, 8, "6gkzwgjz"),
    (37.8324, 112.5584, 9, "ww8p1r4t8"),
    (32, 117, 3, "wte"),
    (37.7853074, -122.4054274, 12, "9q8yywe56gcf"),
    (-54.933333, -67.616667, 12, "4qpzmren1kwb"),
    (-90.0, 180.0, 12, "pbpbpbpbpbpb"),
    (90.0, -180.0, 12, "bpbpbpbpbpbp"),
    (0.0, 0.0, 5, "s0000"),                        # the equator and prime meridian: north-east cell
    (-90.0, -180.0, 5, "00000"),
    (90.0, 180.0, 5, "zzzzz"),
])
def test_known_values(lat: float, lon: float, precision: int, expected: str) -> None:
    assert encode(lat, lon, precision) == expected


def test_default_precision_is_five_characters() -> None:
    assert encode(42.6, -5.6) == "ezs42"


def test_longer_hashes_extend_shorter_ones() -> None:
    full = encode(52.52, 13.405, 12)
    for n in range(1, 12):
        assert encode(52.52, 13.405, n) == full[:n]


def test_every_point_lies_in_its_cell() -> None:
    rng = random.Random(3)
    for _ in range(2000):
        lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
        gh = encode(lat, lon, 5)
        assert set(gh) <= set(ALPHABET)
        south, west, north, east = bounds(gh)
        assert south <= lat < north and west <= lon < east


def test_a_five_character_cell_is_about_five_kilometres() -> None:
    south, west, north, east = bounds(encode(0.0, 0.0, 5))
    km_per_degree = 2 * math.pi * 6371 / 360
    assert (north - south) * km_per_degree == pytest.approx(4.89, abs=0.01)
    assert (east - west) * km_per_degree == pytest.approx(4.89, abs=0.01)


@pytest.mark.parametrize(("lat", "lon", "precision"), [
    (91, 0, 5), (-90.5, 0, 5), (0, 180.1, 5), (0, -181, 5), (math.nan, 0, 5), (0, math.inf, 5), (0, 0, 0), (0, 0, 13),
])
def test_rejects_points_off_the_globe_and_odd_precisions(lat: float, lon: float, precision: int) -> None:
    with pytest.raises(ValueError):
        encode(lat, lon, precision)


def test_bounds_rejects_characters_outside_the_alphabet() -> None:
    for bad in ("", "ezs4a", "ezsi2", "ezs-2"):
        with pytest.raises(ValueError):
            bounds(bad)
