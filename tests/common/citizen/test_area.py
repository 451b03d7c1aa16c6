"""Great-circle distance and the area test the notifier applies to every public alert."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
from citysense_common.citizen.area import EARTH_RADIUS_KM, covers, distance_km
from citysense_common.store import AreaSubscription


@dataclass(frozen=True)
class Circle:
    lat: float
    lon: float
    radius_km: float


def test_known_distances() -> None:
    # Berlin Alexanderplatz -> Brandenburger Tor: about 2.5 km; Berlin -> Munich: about 504 km.
    assert distance_km(52.5219, 13.4132, 52.5163, 13.3777) == pytest.approx(2.47, abs=0.05)
    assert distance_km(52.52, 13.405, 48.1351, 11.582) == pytest.approx(504.4, rel=0.01)
    assert distance_km(0, 0, 0, 1) == pytest.approx(2 * math.pi * EARTH_RADIUS_KM / 360, rel=1e-9)
    assert distance_km(10, 20, 10, 20) == 0.0
    assert distance_km(0, 179.99, 0, -179.99) == pytest.approx(2.22, abs=0.01)  # across the antimeridian
    assert distance_km(90, 0, -90, 0) == pytest.approx(math.pi * EARTH_RADIUS_KM)


def test_covers_inside_edge_and_outside() -> None:
    one_km_north = 1 / (2 * math.pi * EARTH_RADIUS_KM / 360)  # degrees of latitude in 1 km
    area = Circle(52.52, 13.405, 1.0)
    assert covers(area, 52.52, 13.405)
    assert covers(area, 52.52 + one_km_north * 0.999, 13.405)
    assert not covers(area, 52.52 + one_km_north * 1.001, 13.405)


def test_a_place_without_a_position_is_never_covered() -> None:
    area = Circle(0.0, 0.0, 25.0)
    assert not covers(area, None, 0.0)
    assert not covers(area, 0.0, None)
    assert not covers(area, math.nan, 0.0)


def test_an_area_subscription_is_a_circle() -> None:
    sub = AreaSubscription(id="a", email="a@example.org", lat=48.0, lon=11.0, radius_km=5, min_severity="info",
                           language="en")
    assert covers(sub, 48.04, 11.0)
    assert not covers(sub, 48.05, 11.0)
