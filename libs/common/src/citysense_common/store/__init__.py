"""Storage for readings, stations, alerts, subscriptions (webhooks, citizens' areas), deliveries (``base.Store``).

``open_store()`` returns the backend chosen by ``CITYSENSE_STORE``: SQLite (embedded default) or Cassandra.
"""

from citysense_common.store.base import (
    AlertQuery,
    AlertRecord,
    AreaSubscription,
    DailyAggregate,
    Delivery,
    EnrichedReading,
    InvalidCursor,
    NotFound,
    Page,
    StationRecord,
    Store,
    StoreError,
    Subscription,
)
from citysense_common.store.factory import open_store
from citysense_common.store.settings import StoreSettings
from citysense_common.store.sqlite import SQLiteStore

__all__ = [
    "AlertQuery", "AlertRecord", "AreaSubscription", "DailyAggregate", "Delivery", "EnrichedReading",
    "InvalidCursor", "NotFound", "Page",
    "SQLiteStore", "StationRecord", "Store", "StoreError", "Subscription", "StoreSettings", "open_store",
]
