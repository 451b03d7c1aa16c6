"""Notifier settings (environment prefix ``CITYSENSE_``), built by :func:`build_settings` in the entry point."""

from __future__ import annotations

import re
from pathlib import Path

from citysense_common.contract import AlertKind, Severity
from citysense_common.settings import load_settings
from citysense_common.warnings.settings import PublicWarningSettings
from citysense_common.webhook_settings import WebhookSettings
from pydantic import Field, SecretStr, field_validator

from citysense_notifier.email.settings import SmtpSettings

# Which alerts are public on MQTT: the same as the CAP feed's `public:` in config/cap.yaml (a test keeps them equal).
# sensor_fault, station_offline and outlier describe the measuring network, not the environment.
DEFAULT_MQTT_PUBLIC: dict[AlertKind, list[Severity]] = {
    AlertKind.THRESHOLD: [Severity.WARNING, Severity.CRITICAL],
    AlertKind.FORECAST: [Severity.INFO],
}


class NotifierSettings(WebhookSettings, PublicWarningSettings, SmtpSettings):
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
    mqtt_host: str | None = Field(default=None, description="MQTT broker to publish public alerts to; unset = off")
    mqtt_port: int | None = Field(default=None, ge=1, le=65535, description="unset = 8883 with TLS, else 1883")
    mqtt_tls: bool = Field(default=False, description="connect with TLS, verifying the broker's certificate")
    mqtt_ca_file: Path | None = Field(default=None, description="CA bundle for TLS; unset = the system's CAs")
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = Field(default=None, description="never logged")
    mqtt_client_id: str | None = Field(
        default=None, description="unset = citysense-notifier-<hostname> (each replica needs its own)")
    mqtt_topic_prefix: str = Field(default="citysense", description="first topic levels, e.g. city/citysense")
    mqtt_public: dict[AlertKind, list[Severity]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_MQTT_PUBLIC.items()},
        description='kinds and severities published, as JSON, e.g. {"threshold": ["warning", "critical"]}; '
                    "the default matches the CAP feed (config/cap.yaml)")
    mqtt_max_queued: int = Field(
        default=10000, ge=1, description="area events, and station states, waiting for the broker; beyond it the "
                                         "oldest events are dropped, and the states of further stations' rules")
    mqtt_keepalive_s: int = Field(default=30, ge=5, le=3600)
    mqtt_reconnect_max_s: int = Field(default=30, ge=1, le=3600, description="cap on the reconnect backoff")

    @field_validator("mqtt_topic_prefix")
    @classmethod
    def _topic_prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[^/+#\x00]+(/[^/+#\x00]+)*", value):
            raise ValueError("a topic prefix is one or more non-empty levels separated by '/', without + or #")
        return value

    @field_validator("mqtt_ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file at {value}")
        return value

    @property
    def mqtt_port_or_default(self) -> int:
        return self.mqtt_port or (8883 if self.mqtt_tls else 1883)


def build_settings(**overrides: object) -> NotifierSettings:
    return load_settings(NotifierSettings, **overrides)
