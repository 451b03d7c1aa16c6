"""Request and response bodies of the public API (the OpenAPI document is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from citysense_common.webhooks import SubscriptionFilters
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator


class LocationOut(BaseModel):
    lat: float
    lon: float


class AirQuality(BaseModel):
    category: str = Field(description="US EPA band key: good, moderate, unhealthy_sensitive, unhealthy, ...")
    label: str
    color: str = Field(description="the EPA colour of the band, #rrggbb")
    pm2_5: float = Field(description="latest PM2.5 in µg/m³ the category is based on (indicative: EPA uses 24 h)")


class StationOut(BaseModel):
    id: str
    status: Literal["active", "offline"]
    last_seen: datetime
    last_seq: int
    location: LocationOut | None = None
    latest: dict[str, float] = Field(description="latest value per metric")
    air_quality: AirQuality | None = Field(default=None, description="null when the station has no PM2.5")


class StationList(BaseModel):
    items: list[StationOut]


class ReadingOut(BaseModel):
    ts: datetime
    seq: int
    metrics: dict[str, float]
    outliers: list[str] = Field(default_factory=list)
    late: bool = False


class ReadingPage(BaseModel):
    station_id: str
    items: list[ReadingOut]
    next_cursor: str | None = Field(default=None, description="pass as ?cursor= for the next page; null = last")


class AlertOut(BaseModel):
    id: str
    station_id: str
    rule_id: str
    kind: str
    severity: str
    state: Literal["active", "resolved"]
    opened_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    message: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    window: str | None = None
    location: LocationOut | None = None


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_cursor: str | None = None


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl = Field(description="http(s) URL that receives signed CloudEvents by POST; must be public")
    description: str = Field(default="", max_length=500)
    filters: SubscriptionFilters = Field(default_factory=SubscriptionFilters)

    @field_validator("url", mode="before")
    @classmethod
    def _url_length(cls, value: object) -> object:
        if isinstance(value, str) and len(value) > 2048:
            raise ValueError("URL must be at most 2048 characters")
        return value


class SubscriptionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: AnyHttpUrl | None = None
    description: str | None = Field(default=None, max_length=500)
    filters: SubscriptionFilters | None = Field(default=None, description="replaces all filters")
    status: Literal["active", "paused"] | None = Field(default=None, description="pause or resume deliveries")


class SubscriptionOut(BaseModel):
    id: str
    url: str
    description: str
    filters: dict[str, Any] = Field(description="the filters given (see SubscriptionFilters); {} = every event")
    status: Literal["active", "paused"]
    created_at: datetime | None = None
    updated_at: datetime | None = None


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="whsec_... signing secret; shown only in this response, store it now")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class TestRequested(BaseModel):
    subscription_id: str
    event_id: str = Field(description="id of the test CloudEvent")
    webhook_id: str = Field(description="webhook-id header the delivery will carry")
    deliveries_url: str = Field(description="where the outcome appears in the delivery log")


class DeliveryOut(BaseModel):
    event_id: str
    webhook_id: str
    event_type: str
    status: Literal["pending", "delivered", "retrying", "dead"]
    attempts: int
    created_at: datetime
    updated_at: datetime
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None = None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)


class DailyAggregateOut(BaseModel):
    metric: str
    day: str = Field(description="UTC day, YYYY-MM-DD")
    mean: float = Field(description="mean of the day's hourly means")
    max: float = Field(description="highest single reading")
    count: int = Field(description="readings used (sensor-fault values excluded)")
    hours: int = Field(description="hours with at least one value")
    complete: bool = Field(description="at least 18 hourly values: the daily mean is valid for regulatory use")


class ExceedanceOut(BaseModel):
    allowance: str
    limit: float = Field(description="daily mean above this is an exceedance day")
    allowed_days: int = Field(description="exceedance days allowed per calendar year")
    days_above: int = Field(description="complete days in the range with a daily mean above the limit")
    exceeded: bool = Field(description="more exceedance days than allowed")
    source: str


class YearSummaryOut(BaseModel):
    metric: str
    year: int
    days: int
    complete_days: int
    mean: float | None = Field(description="mean of the complete days' means; null without a complete day")
    max: float | None
    exceedances: list[ExceedanceOut]


class AggregateList(BaseModel):
    station_id: str
    items: list[DailyAggregateOut] = Field(description="ordered by metric, then day")
    years: list[YearSummaryOut] = Field(description="per metric and calendar year, over the days in the range")
