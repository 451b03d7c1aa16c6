"""Storage for enriched readings, stations, alerts, subscriptions and deliveries (see ``base.Store``)."""

from citysense_common.store.base import (
    AlertQuery,
    AlertRecord,
    DailyAggregate,
    Delivery,
    EnrichedReading,
    NotFound,
    Page,
    StationRecord,
    Store,
    StoreError,
    Subscription,
)

__all__ = [
    "AlertQuery", "AlertRecord", "DailyAggregate", "Delivery", "EnrichedReading", "NotFound", "Page",
    "StationRecord", "Store", "StoreError", "Subscription",
]
