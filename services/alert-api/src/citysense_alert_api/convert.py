"""Store records -> API models."""

from __future__ import annotations

from datetime import UTC, datetime

from citysense_common.store import AlertRecord, Delivery, EnrichedReading, StationRecord, Subscription
from citysense_common.webhooks import SubscriptionFilters

from citysense_alert_api.air_quality import PM25_METRIC, pm25_category
from citysense_alert_api.models import (
    AirQuality,
    AlertOut,
    DeliveryOut,
    LocationOut,
    ReadingOut,
    StationOut,
    SubscriptionOut,
)


def _location(lat: float | None, lon: float | None) -> LocationOut | None:
    return None if lat is None or lon is None else LocationOut(lat=lat, lon=lon)


def station_out(record: StationRecord, offline_after_s: float, now: datetime | None = None) -> StationOut:
    now = now or datetime.now(UTC)
    # The scorer marks stations offline; a station silent longer than the threshold is shown offline even
    # before the scorer notices (e.g. while the scorer itself is down).
    silent = (now - record.last_seen).total_seconds() > offline_after_s
    status = "offline" if record.status == "offline" or silent else "active"
    band = pm25_category(record.latest.get(PM25_METRIC))
    aq = None if band is None else AirQuality(category=band.key, label=band.label, color=band.color,
                                              pm2_5=record.latest[PM25_METRIC])
    return StationOut(id=record.station_id, status=status, last_seen=record.last_seen, last_seq=record.last_seq,
                      location=_location(record.lat, record.lon), latest=dict(record.latest), air_quality=aq)


def reading_out(reading: EnrichedReading) -> ReadingOut:
    return ReadingOut(ts=reading.ts, seq=reading.seq, metrics=dict(reading.metrics),
                      outliers=list(reading.outliers), late=reading.late)


def alert_out(record: AlertRecord) -> AlertOut:
    return AlertOut(id=record.alert_id, station_id=record.station_id, rule_id=record.rule_id, kind=record.kind,
                    severity=record.severity, state=record.state, opened_at=record.opened_at,
                    updated_at=record.updated_at, resolved_at=record.resolved_at, message=record.message,
                    metric=record.metric, value=record.value, threshold=record.threshold, window=record.window,
                    location=_location(record.lat, record.lon))


def subscription_out(sub: Subscription) -> SubscriptionOut:
    filters = SubscriptionFilters.model_validate(sub.filters).model_dump(mode="json", exclude_none=True)
    return SubscriptionOut(id=sub.id, url=sub.url, description=sub.description, filters=filters, status=sub.status,
                           created_at=sub.created_at, updated_at=sub.updated_at)


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(event_id=d.event_id, webhook_id=d.webhook_id, event_type=d.event_type, status=d.status,
                       attempts=d.attempts, created_at=d.created_at, updated_at=d.updated_at,
                       last_status_code=d.last_status_code, last_error=d.last_error,
                       next_attempt_at=d.next_attempt_at)
