"""What only the Cassandra store has, on the real node of conftest's ``cassandra_node``: its schema and migrations,
every statement it prepares, replication settings, UTC day partitions and driver errors.

Each test uses a keyspace of its own (dropped afterwards), so it sees the schema exactly as migrate() leaves it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from citysense_common.store import EnrichedReading, StoreError
from citysense_common.store import cassandra as cs
from citysense_localstack.servers.cassandra import CassandraNode

from .conftest import cassandra_settings

pytestmark = pytest.mark.slow

Factory = Callable[..., cs.CassandraStore]


@pytest.fixture
def new_store(cassandra_node: CassandraNode | None) -> Iterator[Factory]:
    """Stores on one fresh keyspace (settings may differ per store); the keyspace is dropped at the end."""
    keyspace = f"citysense_test_{uuid.uuid4().hex[:12]}"
    made: list[cs.CassandraStore] = []

    def make(**settings: Any) -> cs.CassandraStore:
        made.append(cs.CassandraStore(cassandra_settings(cassandra_node, cassandra_keyspace=keyspace, **settings)))
        return made[-1]

    yield make
    if made:
        made[0].drop_keyspace()
    for store in made:
        store.close()


def readings_ttl(store: cs.CassandraStore) -> int:
    return list(store._execute(cs.TABLE_TTL_SELECT, (store.keyspace,)))[0][0]


def test_migrate_applies_each_version_once_and_follows_the_ttl_setting(new_store: Factory) -> None:
    store = new_store(readings_ttl_days=30)
    store.migrate()
    versions = [v for v, _, _ in cs.migration_files()]
    assert store.applied_migrations() == versions
    assert readings_ttl(store) == 30 * 86400
    tables = {row[0] for row in store._session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (store.keyspace,))}
    assert tables == {*cs.TABLES, "schema_migrations"}

    shorter = new_store(readings_ttl_days=7)
    shorter.migrate()
    assert shorter.applied_migrations() == versions  # recorded once, not re-applied
    assert readings_ttl(shorter) == 7 * 86400
    forever = new_store(readings_ttl_days=0)
    forever.migrate()
    assert readings_ttl(forever) == 0


def test_every_statement_the_store_prepares_is_valid_cql(new_store: Factory) -> None:
    store = new_store()
    store.migrate()
    for name, cql in cs.prepared_statements().items():
        assert store._stmt(cql) is not None, name  # the server parses and validates against the schema


def test_network_topology_replication(new_store: Factory) -> None:
    # SimpleSnitch names the node's datacenter "datacenter1".
    store = new_store(cassandra_replication_strategy="NetworkTopologyStrategy",
                      cassandra_replication_dcs={"datacenter1": 1})
    store.migrate()
    store.ping()
    row = store._session.execute("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                                 (store.keyspace,)).one()
    assert row[0]["class"].endswith("NetworkTopologyStrategy") and row[0]["datacenter1"] == "1"


def test_readings_are_partitioned_by_utc_day(new_store: Factory) -> None:
    store = new_store()
    store.migrate()
    new_york = timezone(timedelta(hours=-5))
    evening = datetime(2024, 1, 1, 23, 30, 0, 123456, tzinfo=new_york)  # 2024-01-02 04:30 UTC
    store.write_readings([EnrichedReading("st", evening, 1, {"pm2_5": 3.0})])
    days = [row[0] for row in store._session.execute("SELECT day FROM readings")]
    assert [d.date() for d in days] == [date(2024, 1, 2)]  # the driver's Date -> datetime.date
    page = store.read_readings("st", datetime(2024, 1, 2, 4, tzinfo=UTC), datetime(2024, 1, 2, 5, tzinfo=UTC))
    assert [(r.ts, r.seq) for r in page.items] == [(datetime(2024, 1, 2, 4, 30, 0, 123000, tzinfo=UTC), 1)]


def test_driver_errors_become_store_errors(new_store: Factory) -> None:
    store = new_store()  # never migrated: its keyspace does not exist
    with pytest.raises(StoreError, match="Cassandra"):
        store.get_station("st")


def test_area_subscription_copies_are_repaired_by_a_retry_and_removed_by_a_delete(new_store: Factory) -> None:
    """The copies by status and by email follow the row by id: a create retried after a half write restores them,
    and a delete removes copies even when the row by id is already gone (nothing the notifier lists survives)."""
    from citysense_common.store import AreaSubscription

    store = new_store()
    store.migrate()
    sub = AreaSubscription(id="a1", email="a@example.org", lat=1.0, lon=2.0, radius_km=3.0, min_severity="info",
                           language="en", status="confirmed", created_at=datetime(2026, 1, 1, tzinfo=UTC))
    store.create_area_subscription(sub)
    store._execute(cs.AREA_DELETE_BY_STATUS, ("confirmed", "a1"))
    assert store.list_area_subscriptions("confirmed") == []  # as if the process died between the writes
    store.create_area_subscription(sub)  # the retry: the row exists, its copies are written again
    assert store.list_area_subscriptions("confirmed") == [sub]

    store._execute(cs.AREA_DELETE, ("a1",))  # the row by id alone
    assert store.delete_area_subscription("a1") is False  # the row by id was gone already
    assert store.list_area_subscriptions("confirmed") == []
    assert store.list_area_subscriptions(email="a@example.org") == []
