"""Notifier settings (environment prefix ``CITYSENSE_``), built by :func:`build_settings` in the entry point."""

from __future__ import annotations

from citysense_common.settings import load_settings
from citysense_common.webhook_settings import WebhookSettings
from pydantic import Field


class NotifierSettings(WebhookSettings):
    notifier_group: str = Field(default="citysense-notifier", description="Kafka consumer group")
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60, description="deadline of one whole attempt")
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_max_age_s: float = Field(default=3600.0, gt=0, description="dead-letter a delivery older than this")
    webhook_backoff_base_s: float = Field(default=1.0, gt=0, description="first retry delay; doubles per attempt")
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, description="cap on one retry delay (and Retry-After)")
    webhook_subscriber_concurrency: int = Field(
        default=4, ge=1, le=100, description="parallel POSTs per subscriber; a new event finding all busy is parked")
    webhook_retries_topic: str = Field(default="citysense.webhook-retries",
                                       description="topic of parked deliveries (failed once, or subscriber busy)")
    notifier_max_in_flight: int = Field(default=2000, ge=1,
                                        description="new events in flight before their consumption pauses")
    notifier_max_parked: int = Field(default=10000, ge=1,
                                     description="parked deliveries in flight before the retry topic pauses")
    subscriptions_refresh_s: float = Field(default=1.0, gt=0, description="how often the subscription list reloads")
    cloudevents_source: str = Field(default="/citysense/alerts", description="CloudEvents `source` attribute")
    notifier_metrics_host: str = "127.0.0.1"
    notifier_metrics_port: int = Field(default=9101, ge=0, le=65535,
                                       description="Prometheus /metrics and liveness /healthz; 0 = off")
    notifier_liveness_timeout_s: float = Field(
        default=60.0, gt=0, description="/healthz fails once the main loop has made no progress for this long")
    alertmanager_url: str | None = Field(default=None, description="Alertmanager base URL, e.g. http://am:9093")
    alertmanager_timeout_s: float = Field(default=5.0, gt=0)
    alertmanager_max_attempts: int = Field(default=5, ge=1)


def build_settings(**overrides: object) -> NotifierSettings:
    return load_settings(NotifierSettings, **overrides)
