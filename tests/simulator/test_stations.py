"""Station identity: stable, distinct across replicas, inside the bounding box."""

from __future__ import annotations

import pytest
from citysense_simulator.stations import DEFAULT_BBOX, instance_key, make_stations, parse_bbox


@pytest.mark.parametrize(
    ("identity", "key"),
    [("citysense-simulator-3", "3"), ("sim-12", "12"), ("laptop", "laptop"), ("my host!", "my-host-")],
)
def test_instance_key_uses_statefulset_ordinal(identity: str, key: str) -> None:
    assert instance_key(identity) == key


def test_replicas_get_distinct_ids_without_coordination() -> None:
    ids = [s.station_id for pod in range(5) for s in make_stations(1000, f"citysense-simulator-{pod}")]
    assert len(ids) == len(set(ids)) == 5000


def test_ids_and_coordinates_are_stable_across_restarts() -> None:
    assert make_stations(20, "sim-1") == make_stations(20, "sim-1")


def test_coordinates_fall_inside_the_bbox_and_spread_out() -> None:
    min_lon, min_lat, max_lon, max_lat = DEFAULT_BBOX
    stations = make_stations(2000, "0")
    assert all(min_lat <= s.lat <= max_lat and min_lon <= s.lon <= max_lon for s in stations)
    assert len({(s.lat, s.lon) for s in stations}) == 2000
    lats = sorted(s.lat for s in stations)
    assert lats[100] < min_lat + 0.1 * (max_lat - min_lat)  # roughly uniform, not clustered
    assert lats[-100] > max_lat - 0.1 * (max_lat - min_lat)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "13,52,12,53", "0,95,1,96"])
def test_bad_bbox_is_explained(text: str) -> None:
    with pytest.raises(ValueError, match="bbox"):
        parse_bbox(text)


def test_too_long_identity_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="not valid"):
        make_stations(1, "y" * 50, prefix="p" * 30)
