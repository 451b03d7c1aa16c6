"""The store under test: SQLite, and Cassandra on a real node.

The Cassandra cases run against the node the ``cassandra_node`` fixture (tests/conftest.py) starts for the session
(Apache Cassandra from Maven Central jars, in a temporary folder), or against the cluster named by
CITYSENSE_CASSANDRA_HOSTS (and CITYSENSE_CASSANDRA_PORT) when that is set. Either way every case runs on both
backends: nothing is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from citysense_common.store import SQLiteStore, Store, StoreSettings
from citysense_localstack.servers.cassandra import CassandraNode

BACKENDS = ["sqlite", "cassandra"]


def cassandra_settings(node: CassandraNode | None, **overrides: object) -> StoreSettings:
    """Store settings pointing at ``node`` (or at the external cluster of the environment when None)."""
    if node is not None:
        overrides = {"cassandra_hosts": [node.contact_points], "cassandra_port": node.port, **overrides}
    return StoreSettings(**overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def _cassandra_store(cassandra_node: CassandraNode | None) -> Iterator[Store]:
    from citysense_common.store.cassandra import CassandraStore

    # A throwaway keyspace per session so a real cluster's data is never touched.
    store = CassandraStore(cassandra_settings(cassandra_node,
                                              cassandra_keyspace=f"citysense_test_{uuid.uuid4().hex[:12]}"))
    store.migrate()
    try:
        yield store
    finally:
        store.drop_keyspace()
        store.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        sqlite = SQLiteStore(tmp_path / "store.db")
        sqlite.migrate()
        yield sqlite
        sqlite.close()
    else:
        cassandra = request.getfixturevalue("_cassandra_store")
        cassandra.truncate_all()  # isolation between tests without re-creating the schema
        yield cassandra
