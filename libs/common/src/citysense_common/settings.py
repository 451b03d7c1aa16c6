"""Typed settings shared by every service (environment prefix ``CITYSENSE_``).

Each service subclasses :class:`CommonSettings` with its own fields and builds it with :func:`load_settings`
inside its entry point, never at import time, so tests and tools can construct settings explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from citysense_common.registry import Registry, load_registry

ENV_PREFIX = "CITYSENSE_"


class SettingsError(ValueError):
    """Configuration that cannot work; the message names the environment variable to fix."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset = the local broker on 127.0.0.1:KAFKA_PORT"
    )
    kafka_port: int = Field(default=9092, ge=1, le=65535, description="port of the local broker")
    kafka_options: dict[str, str] = Field(
        default_factory=dict,
        description="extra librdkafka properties as JSON, e.g. TLS/SASL settings for a real cluster",
    )
    readings_topic: str = "citysense.readings"
    readings_partitions: int = Field(
        default=4, ge=1, description="partitions of the readings topic when citysense creates it (`make up`, a "
        "Kafka without the topic); an existing topic keeps its own, e.g. the cluster's KafkaTopic with 12. Each is a "
        "task slot the real-time query holds for good, so a laptop's share is a few")
    alerts_topic: str = "citysense.alerts"
    dlq_topic: str = "citysense.readings.dlq"
    metrics_file: Path | None = Field(default=None, description="metric registry; default config/metrics.yaml")
    profile: str = Field(default="city", description="simulator / outlier-scoring profile from the registry")
    data_dir: Path = Field(default=Path(".citysense"), description="where local state lives")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @property
    def bootstrap(self) -> str:
        return self.kafka_bootstrap or f"127.0.0.1:{self.kafka_port}"

    def registry(self) -> Registry:
        registry = load_registry(self.metrics_file)
        if self.profile not in registry.profiles:
            raise SettingsError(
                f"CITYSENSE_PROFILE={self.profile!r} is not a profile of the metric registry; "
                f"choose one of {sorted(registry.profiles)}"
            )
        return registry


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    """Build settings from the environment (plus explicit overrides) with an error a person can act on."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            problems.append(f"{ENV_PREFIX}{field.upper()}: {error['msg']}")
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
