"""The store under test: SQLite always, Cassandra too whenever CITYSENSE_CASSANDRA_HOSTS is set.

The parameter list is built from the environment (no skips): without a Cassandra the Cassandra cases simply do not
exist, so nothing is ever reported as passing that did not run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from citysense_common.store import SQLiteStore, Store, StoreSettings

BACKENDS = ["sqlite"] + (["cassandra"] if os.environ.get("CITYSENSE_CASSANDRA_HOSTS") else [])


@pytest.fixture(scope="session")
def _cassandra_store() -> Iterator[Store]:
    from citysense_common.store.cassandra import CassandraStore

    # A throwaway keyspace per session so a real cluster's data is never touched.
    settings = StoreSettings(cassandra_keyspace=f"citysense_test_{uuid.uuid4().hex[:12]}")
    store = CassandraStore(settings)
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
