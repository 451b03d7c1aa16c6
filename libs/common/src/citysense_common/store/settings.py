"""Store settings (environment prefix ``CITYSENSE_``): which backend, where SQLite lives, how to reach Cassandra."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from citysense_common.settings import CommonSettings

# Cassandra consistency levels a deployment may reasonably choose (names of cassandra.ConsistencyLevel).
ConsistencyName = Literal[
    "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE", "ANY"
]
_IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


class StoreSettings(CommonSettings):
    store: Literal["sqlite", "cassandra"] = Field(default="sqlite", description="storage backend")
    sqlite_path: Path = Field(
        default=Path(".citysense/citysense.db"), description="SQLite database file; default <data_dir>/citysense.db"
    )
    sqlite_busy_timeout_ms: int = Field(
        default=30_000, ge=0, description="how long a writer waits for another process's write lock"
    )

    # NoDecode: accept "host1,host2" rather than pydantic-settings' default JSON list syntax.
    cassandra_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="contact points, comma separated"
    )
    cassandra_port: int = Field(default=9042, ge=1, le=65535)
    cassandra_keyspace: str = Field(default="citysense", description="keyspace (created by migrate if missing)")
    cassandra_username: str | None = None
    cassandra_password: SecretStr | None = None
    cassandra_local_dc: str | None = Field(default=None, description="local datacenter for DC-aware routing")
    cassandra_consistency: ConsistencyName = "LOCAL_QUORUM"
    cassandra_request_timeout_s: float = Field(default=10.0, gt=0)
    cassandra_write_concurrency: int = Field(default=64, ge=1, le=1024, description="in-flight writes per batch")
    cassandra_replication_strategy: Literal["SimpleStrategy", "NetworkTopologyStrategy"] = "SimpleStrategy"
    cassandra_replication_factor: int = Field(default=1, ge=1, description="SimpleStrategy replication factor")
    cassandra_replication_dcs: dict[str, int] = Field(
        default_factory=dict, description='NetworkTopologyStrategy factors as JSON, e.g. {"dc1": 3}'
    )
    alerts_lookback_days: int = Field(
        default=30, ge=1, description="Cassandra: day partitions list_alerts scans when the query has no `since`"
    )
    readings_ttl_days: int = Field(
        default=30, ge=0, description="TTL of raw readings, counted from when they were written: Cassandra's table "
        "TTL; SQLite deletes them as long after their write; 0 = keep forever"
    )
    alerts_retention_days: int = Field(
        default=0, ge=0, description="SQLite: resolved alerts last updated this long ago are deleted; 0 = keep "
        "forever, as Cassandra does (its alert tables have no TTL)"
    )
    deliveries_retention_days: int = Field(
        default=0, ge=0, description="SQLite: delivered and dead deliveries last updated this long ago are deleted; "
        "0 = keep forever, as Cassandra does (its delivery tables have no TTL)"
    )
    sqlite_retention_interval_s: float = Field(
        default=600, gt=0, description="SQLite: the writer of readings (the scorer) applies retention at most this "
        "often, from its write path"
    )
    sqlite_min_free_bytes: int = Field(
        default=64 * 1024 * 1024, ge=0, description="SQLite: below this many free bytes on the store's filesystem "
        "ping() (readiness) fails; 0 = no floor"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_sqlite_path(cls, data: Any) -> Any:
        # The default depends on data_dir, which may itself come from the environment.
        if isinstance(data, dict) and not data.get("sqlite_path"):
            data = dict(data)
            data["sqlite_path"] = Path(data.get("data_dir") or Path(".citysense")) / "citysense.db"
        return data

    @field_validator("cassandra_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @field_validator("cassandra_keyspace")
    @classmethod
    def _keyspace_identifier(cls, value: str) -> str:
        # The keyspace name is interpolated into CQL (it cannot be a bind marker), so only plain identifiers.
        if not _IDENTIFIER.match(value):
            raise ValueError("must be a lowercase identifier: letter first, then letters, digits or _ (max 48)")
        return value

    @model_validator(mode="after")
    def _replication_complete(self) -> StoreSettings:
        if self.cassandra_replication_strategy == "NetworkTopologyStrategy" and not self.cassandra_replication_dcs:
            raise ValueError("cassandra_replication_dcs is required with NetworkTopologyStrategy")
        return self

    def replication_map(self) -> dict[str, str | int]:
        """The keyspace's replication option as CQL wants it."""
        if self.cassandra_replication_strategy == "NetworkTopologyStrategy":
            return {"class": "NetworkTopologyStrategy", **self.cassandra_replication_dcs}
        return {"class": "SimpleStrategy", "replication_factor": self.cassandra_replication_factor}
