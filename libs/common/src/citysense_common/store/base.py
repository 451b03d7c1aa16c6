"""The store interface every backend implements (SQLite embedded, Cassandra in the cluster).

Writers (the scorer, the notifier) and readers (the API) see only this interface. Every write is idempotent:
applying the same batch twice leaves the store exactly as applying it once, so a replayed Spark micro-batch or a
redelivered Kafka message changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from citysense_common.contract import AlertEvent, AlertState

if TYPE_CHECKING:
    from citysense_common.store.reading_batch import ReadingBatch

T = TypeVar("T")

StationState = Literal["active", "offline"]
AlertLifecycle = Literal["active", "resolved"]
SubscriptionStatus = Literal["active", "paused"]
DeliveryStatus = Literal["pending", "delivered", "retrying", "dead"]
AreaSubscriptionStatus = Literal["pending", "confirmed"]


class StoreError(RuntimeError):
    """The store cannot be reached or refused an operation."""


class NotFound(StoreError):
    pass


class StoreFull(StoreError):
    """The store's disk is full (or below its free-space floor): writes fail until space returns; reads go on."""


class InvalidCursor(StoreError, ValueError):
    """A pagination cursor that this store did not issue for this query (an API should answer 400)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; pass ``next_cursor`` back to get the next page (None = last page)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True)
class EnrichedReading:
    """A validated, scored reading as stored. Identity: (station_id, ts, seq)."""

    station_id: str
    ts: datetime  # event time, UTC
    seq: int
    metrics: dict[str, float]
    lat: float | None = None
    lon: float | None = None
    outliers: tuple[str, ...] = ()  # metric names judged statistical outliers
    zscores: dict[str, float] = field(default_factory=dict)
    faults: tuple[str, ...] = ()  # metric names flagged by sensor-fault detection
    late: bool = False  # arrived behind the watermark: stored, counted, never reopens alerts
    ingested_at: datetime | None = None


@dataclass(frozen=True)
class StationRecord:
    """Latest known state of a station. ``upsert_stations`` keeps the record with the newest ``last_seen``."""

    station_id: str
    last_seen: datetime
    last_seq: int
    latest: dict[str, float]
    lat: float | None = None
    lon: float | None = None
    status: StationState = "active"
    status_changed_at: datetime | None = None


@dataclass(frozen=True)
class AlertRecord:
    """Current state of one alert (one row per alert_id), built from its lifecycle events."""

    alert_id: str
    station_id: str
    rule_id: str
    kind: str  # threshold | outlier | sensor_fault | station_offline | forecast
    severity: str  # info | warning | critical
    state: AlertLifecycle
    opened_at: datetime
    updated_at: datetime  # event_time of the newest event applied; older events never overwrite newer ones
    message: str
    last_event_id: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    window: str | None = None
    lat: float | None = None
    lon: float | None = None
    resolved_at: datetime | None = None

    @classmethod
    def of(cls, event: AlertEvent) -> AlertRecord:
        """The alert's state as of this event (a store keeps the newest by ``updated_at``)."""
        return cls(
            alert_id=event.alert_id, station_id=event.station_id, rule_id=event.rule_id, kind=event.kind.value,
            severity=event.severity.value, state="resolved" if event.state is AlertState.RESOLVED else "active",
            opened_at=event.opened_at, updated_at=event.event_time, message=event.message,
            last_event_id=event.event_id, metric=event.metric, value=event.value, threshold=event.threshold,
            window=event.window, lat=event.location.lat if event.location else None,
            lon=event.location.lon if event.location else None, resolved_at=event.resolved_at,
        )


@dataclass(frozen=True)
class AlertQuery:
    state: Literal["active", "resolved", "all"] = "active"
    severity: str | None = None  # exact severity
    kind: str | None = None
    station_id: str | None = None
    bbox: tuple[float, float, float, float] | None = None  # min_lon, min_lat, max_lon, max_lat
    since: datetime | None = None  # opened_at >= since
    limit: int = 100
    cursor: str | None = None


@dataclass(frozen=True)
class Subscription:
    id: str
    url: str
    secret: str  # signing secret (whsec_...); the API shows it once, at creation
    description: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    status: SubscriptionStatus = "active"
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Delivery:
    """One event to one subscriber. Identity: (subscription_id, event_id); ``webhook_id`` never changes."""

    subscription_id: str
    event_id: str
    webhook_id: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    updated_at: datetime
    event_type: str = ""
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


@dataclass(frozen=True)
class AreaSubscription:
    """A citizen's email warnings for an area: a circle on the map and the lowest severity to be warned about.

    Created ``pending`` by the public subscribe form, ``confirmed`` by the signed link in the confirmation email
    (double opt-in), deleted by the unsubscribe link. Only the notifier reads the address; no API response shows it.
    """

    id: str  # random, URL-safe; never derived from the address
    email: str  # normalised: surrounding space stripped, domain lower-cased
    lat: float
    lon: float
    radius_km: float
    min_severity: str  # a contract Severity value: info | warning | critical
    language: str  # "en" | "de": the language of every email to this address
    status: AreaSubscriptionStatus = "pending"
    created_at: datetime | None = None
    confirmed_at: datetime | None = None


@dataclass(frozen=True)
class DailyAggregate:
    """Per station, metric and UTC day (batch job); ``complete`` applies the data-completeness rule."""

    station_id: str
    metric: str
    day: str  # YYYY-MM-DD
    mean: float
    max: float
    count: int
    hours: int  # hours with at least one value
    complete: bool


@runtime_checkable
class Store(Protocol):
    # lifecycle
    def migrate(self) -> None: ...
    def ping(self) -> None: ...  # raises StoreError when unreachable
    def close(self) -> None: ...

    # readings and stations (written by the scorer)
    def write_readings(self, readings: Sequence[EnrichedReading]) -> None: ...
    def write_reading_batch(self, batch: ReadingBatch) -> None: ...  # same effect as write_readings(batch.rows())
    def read_readings(self, station_id: str, start: datetime, end: datetime, metric: str | None = None,
                      limit: int = 100, cursor: str | None = None) -> Page[EnrichedReading]: ...
    def upsert_stations(self, stations: Sequence[StationRecord]) -> None: ...
    def set_station_status(self, station_id: str, status: StationState, at: datetime) -> None: ...
    def get_station(self, station_id: str) -> StationRecord | None: ...
    def list_stations(self) -> list[StationRecord]: ...

    # alerts (written by the scorer from its lifecycle events)
    def upsert_alerts(self, alerts: Sequence[AlertRecord]) -> None: ...
    def get_alert(self, alert_id: str) -> AlertRecord | None: ...
    def list_alerts(self, query: AlertQuery) -> Page[AlertRecord]: ...

    # subscriptions (API) and deliveries (notifier)
    def create_subscription(self, subscription: Subscription) -> None: ...
    def get_subscription(self, subscription_id: str) -> Subscription | None: ...
    def list_subscriptions(self, status: SubscriptionStatus | None = None) -> list[Subscription]: ...
    def update_subscription(self, subscription: Subscription) -> None: ...  # NotFound if missing
    def delete_subscription(self, subscription_id: str) -> bool: ...
    def record_delivery(self, delivery: Delivery) -> None: ...  # upsert by (subscription_id, event_id)
    def get_delivery(self, subscription_id: str, event_id: str) -> Delivery | None: ...
    def list_deliveries(self, subscription_id: str, limit: int = 100,
                        cursor: str | None = None) -> Page[Delivery]: ...

    # citizens' area subscriptions (public subscribe form in the API; email from the notifier)
    def create_area_subscription(self, subscription: AreaSubscription) -> None: ...
    def get_area_subscription(self, subscription_id: str) -> AreaSubscription | None: ...
    def list_area_subscriptions(self, status: AreaSubscriptionStatus | None = None,
                                email: str | None = None) -> list[AreaSubscription]: ...
    def update_area_subscription(self, subscription: AreaSubscription) -> None: ...  # NotFound if missing
    def delete_area_subscription(self, subscription_id: str) -> bool: ...

    # daily aggregates (batch job)
    def write_daily_aggregates(self, aggregates: Sequence[DailyAggregate]) -> None: ...
    def read_daily_aggregates(self, station_id: str, metric: str | None = None, start_day: str | None = None,
                              end_day: str | None = None) -> list[DailyAggregate]: ...
