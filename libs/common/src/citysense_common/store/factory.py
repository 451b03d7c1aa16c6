"""Build the configured store backend and bring its schema up to date."""

from __future__ import annotations

from citysense_common.store.base import Store
from citysense_common.store.settings import StoreSettings


def open_store(settings: StoreSettings | None = None) -> Store:
    """The backend chosen by ``CITYSENSE_STORE``, migrated and ready. The caller closes it."""
    if settings is None:
        from citysense_common.settings import load_settings

        settings = load_settings(StoreSettings)  # read the environment now, never at import
    store: Store
    if settings.store == "cassandra":
        from citysense_common.store.cassandra import CassandraStore  # imports cassandra-driver lazily

        store = CassandraStore(settings)
    else:
        from citysense_common.store.sqlite import SQLiteStore

        store = SQLiteStore.from_settings(settings)
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
