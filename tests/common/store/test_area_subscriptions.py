"""Citizens' area subscriptions on every backend in conftest.BACKENDS (SQLite, and Cassandra on a real node)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from citysense_common.store import AreaSubscription, NotFound, Store

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def area(sub_id: str, seconds: float = 0, **kw: Any) -> AreaSubscription:
    base: dict[str, Any] = dict(id=sub_id, email=f"{sub_id}@example.org", lat=52.52, lon=13.405, radius_km=2.5,
                                min_severity="warning", language="de", created_at=T0 + timedelta(seconds=seconds))
    base.update(kw)
    return AreaSubscription(**base)


def test_round_trip_every_field_and_create_is_idempotent(store: Store) -> None:
    a = area("a1", confirmed_at=None, created_at=T0 + timedelta(microseconds=1500))
    store.create_area_subscription(a)
    store.create_area_subscription(replace(a, email="evil@example.org", status="confirmed"))  # same id: no change
    got = store.get_area_subscription("a1")
    assert got == replace(a, created_at=T0 + timedelta(milliseconds=1))  # millisecond precision, as everywhere
    assert got.status == "pending" and got.confirmed_at is None
    assert store.get_area_subscription("nope") is None
    assert store.list_area_subscriptions(email="evil@example.org") == []
    assert store.list_area_subscriptions(status="confirmed") == []


def test_created_at_is_filled_in(store: Store) -> None:
    store.create_area_subscription(area("a1", created_at=None))
    got = store.get_area_subscription("a1")
    assert got is not None and got.created_at is not None
    assert abs(got.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_list_by_status_and_email_oldest_first(store: Store) -> None:
    subs = [area("c", 30, status="confirmed", confirmed_at=T0), area("b", 10),
            area("a", 20, email="x@example.org", status="confirmed", confirmed_at=T0),
            area("d", 10, email="x@example.org")]
    for s in subs:
        store.create_area_subscription(s)
    ids = lambda found: [s.id for s in found]  # noqa: E731
    assert ids(store.list_area_subscriptions()) == ["b", "d", "a", "c"]  # created_at, then id
    assert ids(store.list_area_subscriptions("confirmed")) == ["a", "c"]
    assert ids(store.list_area_subscriptions("pending")) == ["b", "d"]
    assert ids(store.list_area_subscriptions(email="x@example.org")) == ["d", "a"]
    assert ids(store.list_area_subscriptions("pending", email="x@example.org")) == ["d"]
    assert ids(store.list_area_subscriptions("confirmed", email="x@example.org")) == ["a"]
    assert store.list_area_subscriptions(email="X@example.org") == []  # exact match: callers normalise
    assert store.list_area_subscriptions("confirmed")[1] == subs[0]  # the listings carry every field


def test_confirm_moves_it_between_the_listings(store: Store) -> None:
    a = area("a1", 5)
    store.create_area_subscription(a)
    confirmed = replace(a, status="confirmed", confirmed_at=T0 + timedelta(hours=1), created_at=T0 + timedelta(9))
    store.update_area_subscription(confirmed)
    store.update_area_subscription(confirmed)  # a repeated confirm changes nothing
    expected = replace(confirmed, created_at=a.created_at)  # created_at never changes
    assert store.get_area_subscription("a1") == expected
    assert store.list_area_subscriptions("confirmed") == [expected]
    assert store.list_area_subscriptions("pending") == []
    assert store.list_area_subscriptions(email=a.email) == [expected]

    moved = replace(expected, email="new@example.org", radius_km=10.0, min_severity="critical", language="en")
    store.update_area_subscription(moved)
    assert store.list_area_subscriptions(email=a.email) == []
    assert store.list_area_subscriptions(email="new@example.org") == [moved]
    assert store.list_area_subscriptions("confirmed") == [moved]


def test_update_of_a_missing_subscription_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.update_area_subscription(area("missing"))
    assert store.get_area_subscription("missing") is None
    assert store.list_area_subscriptions() == []


def test_delete_removes_it_from_every_listing(store: Store) -> None:
    keep, gone = area("keep", 1, status="confirmed"), area("gone", 2, status="confirmed")
    store.create_area_subscription(keep)
    store.create_area_subscription(gone)
    assert store.delete_area_subscription("gone") is True
    assert store.delete_area_subscription("gone") is False
    assert store.get_area_subscription("gone") is None
    assert store.list_area_subscriptions("confirmed") == [keep]
    assert store.list_area_subscriptions(email=gone.email) == []
    assert store.list_area_subscriptions() == [keep]
