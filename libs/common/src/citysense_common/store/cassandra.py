# ruff: noqa: S608  -- SQL text is built only from module constants (column lists); every value is bound.
"""The store on Apache Cassandra (cassandra-driver, imported lazily: the package works without it).

Design notes (why, not what):

* Readings are partitioned by (station_id, UTC day) and clustered ``ts DESC, seq ASC``: partitions stay bounded
  (86 400 rows per day at 1 Hz) and the API's "newest first in a time range" is a slice of a few partitions.
* "Older never overwrites newer" (stations, alerts, deliveries) uses Cassandra's own last-write-wins with
  ``USING TIMESTAMP`` derived from the record's time, so it needs no read-before-write and no lightweight
  transaction, and a replayed batch writes identical cells: idempotent by construction.
* Alerts are written to three tables (by id, by UTC day of ``opened_at``, by station). ``opened_at`` is part of
  the deterministic alert_id, so an alert's rows never move between partitions. Filters other than station and
  ``since`` (state, severity, kind, bbox) are applied client-side after a partition-bounded query: secondary
  indexes or ALLOW FILTERING would fan out to every node, and a city's alerts per day are few; bbox in particular
  has no CQL form that a partition key could serve.
* Pagination uses the driver's paging state for the current partition plus the index of that partition, base64 in
  an opaque cursor. A page may be shorter than ``limit`` (even empty) while ``next_cursor`` is set, when a
  partition runs out or rows were filtered client-side; following cursors always yields every item exactly once.
* Timestamps have millisecond precision (CQL ``timestamp``); the SQLite store truncates the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Any, TypeVar, get_args

from citysense_common.store._util import day_of, decode_cursor, encode_cursor, in_bbox, to_ms, utc
from citysense_common.store.base import (
    AlertQuery,
    AlertRecord,
    AreaSubscription,
    AreaSubscriptionStatus,
    DailyAggregate,
    Delivery,
    EnrichedReading,
    InvalidCursor,
    NotFound,
    Page,
    StationRecord,
    StationState,
    StoreError,
    Subscription,
    SubscriptionStatus,
)
from citysense_common.store.reading_batch import ReadingBatch
from citysense_common.store.settings import StoreSettings

T = TypeVar("T")

# ---------------------------------------------------------------------- CQL (module constants: tests parse them)

MIGRATIONS_CREATE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, name text, applied_at timestamp)"
)
MIGRATIONS_SELECT = "SELECT version FROM schema_migrations"
MIGRATION_INSERT = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
TABLE_TTL_SELECT = (
    "SELECT default_time_to_live FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'readings'"
)

_READING_COLS = "station_id, ts, seq, metrics, lat, lon, outliers, zscores, faults, late, ingested_at"
READING_INSERT = (
    "INSERT INTO readings (station_id, day, ts, seq, metrics, lat, lon, outliers, zscores, faults, late,"
    " ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
READINGS_SELECT = f"SELECT {_READING_COLS} FROM readings WHERE station_id = ? AND day = ? AND ts >= ? AND ts < ?"

_STATION_COLS = "station_id, last_seen, last_seq, latest, lat, lon, status, status_changed_at"
STATION_UPDATE_READING = (
    "UPDATE stations USING TIMESTAMP ? SET last_seen = ?, last_seq = ?, latest = ?, lat = ?, lon = ?"
    " WHERE station_id = ?"
)
STATION_UPDATE_STATUS = (
    "UPDATE stations USING TIMESTAMP ? SET status = ?, status_changed_at = ? WHERE station_id = ?"
)
STATION_SELECT = f"SELECT {_STATION_COLS} FROM stations WHERE station_id = ?"
STATIONS_SELECT = f"SELECT {_STATION_COLS} FROM stations"

_ALERT_COLS = (
    "alert_id, station_id, rule_id, kind, severity, state, opened_at, updated_at, message, last_event_id, metric,"
    " value, threshold, window, lat, lon, resolved_at"
)
_ALERT_MARKS = ", ".join("?" * 17)
ALERT_INSERT_BY_ID = f"INSERT INTO alerts_by_id ({_ALERT_COLS}) VALUES ({_ALERT_MARKS}) USING TIMESTAMP ?"
ALERT_INSERT_BY_STATION = f"INSERT INTO alerts_by_station ({_ALERT_COLS}) VALUES ({_ALERT_MARKS}) USING TIMESTAMP ?"
ALERT_INSERT_BY_DAY = f"INSERT INTO alerts_by_day (day, {_ALERT_COLS}) VALUES (?, {_ALERT_MARKS}) USING TIMESTAMP ?"
ALERT_SELECT = f"SELECT {_ALERT_COLS} FROM alerts_by_id WHERE alert_id = ?"
ALERTS_SELECT_DAY = f"SELECT {_ALERT_COLS} FROM alerts_by_day WHERE day = ? AND opened_at >= ?"
ALERTS_SELECT_STATION = f"SELECT {_ALERT_COLS} FROM alerts_by_station WHERE station_id = ? AND opened_at >= ?"

_SUB_COLS = "id, url, secret, description, filters, status, created_at, updated_at"
SUBSCRIPTION_INSERT = f"INSERT INTO subscriptions ({_SUB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
SUBSCRIPTION_UPDATE = (
    "UPDATE subscriptions SET url = ?, secret = ?, description = ?, filters = ?, status = ?, updated_at = ?"
    " WHERE id = ? IF EXISTS"
)
SUBSCRIPTION_DELETE = "DELETE FROM subscriptions WHERE id = ? IF EXISTS"
SUBSCRIPTION_SELECT = f"SELECT {_SUB_COLS} FROM subscriptions WHERE id = ?"
SUBSCRIPTIONS_SELECT = f"SELECT {_SUB_COLS} FROM subscriptions"

_AREA_COLS = "id, email, lat, lon, radius_km, min_severity, language, status, created_at, confirmed_at"
AREA_INSERT = f"INSERT INTO area_subscriptions ({_AREA_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
AREA_UPDATE = (
    "UPDATE area_subscriptions SET email = ?, lat = ?, lon = ?, radius_km = ?, min_severity = ?, language = ?,"
    " status = ?, confirmed_at = ? WHERE id = ? IF EXISTS"
)
AREA_DELETE = "DELETE FROM area_subscriptions WHERE id = ? IF EXISTS"
AREA_SELECT = f"SELECT {_AREA_COLS} FROM area_subscriptions WHERE id = ?"
AREAS_SELECT = f"SELECT {_AREA_COLS} FROM area_subscriptions"
AREA_INSERT_BY_STATUS = f"INSERT INTO area_subscriptions_by_status ({_AREA_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
AREA_INSERT_BY_EMAIL = f"INSERT INTO area_subscriptions_by_email ({_AREA_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
AREA_DELETE_BY_STATUS = "DELETE FROM area_subscriptions_by_status WHERE status = ? AND id = ?"
AREA_DELETE_BY_EMAIL = "DELETE FROM area_subscriptions_by_email WHERE email = ? AND id = ?"
AREA_EMAIL_BY_STATUS = "SELECT email FROM area_subscriptions_by_status WHERE status = ? AND id = ?"
AREAS_SELECT_STATUS = f"SELECT {_AREA_COLS} FROM area_subscriptions_by_status WHERE status = ?"
AREAS_SELECT_EMAIL = f"SELECT {_AREA_COLS} FROM area_subscriptions_by_email WHERE email = ?"
AREA_STATUSES: tuple[str, ...] = get_args(AreaSubscriptionStatus)

_DELIVERY_COLS = (
    "subscription_id, event_id, webhook_id, status, attempts, created_at, updated_at, event_type, last_status_code,"
    " last_error, next_attempt_at"
)
_DELIVERY_MARKS = ", ".join("?" * 11)
DELIVERY_INSERT = f"INSERT INTO deliveries ({_DELIVERY_COLS}) VALUES ({_DELIVERY_MARKS}) USING TIMESTAMP ?"
DELIVERY_INSERT_BY_TIME = (
    f"INSERT INTO deliveries_by_time ({_DELIVERY_COLS}) VALUES ({_DELIVERY_MARKS}) USING TIMESTAMP ?"
)
DELIVERY_SELECT = f"SELECT {_DELIVERY_COLS} FROM deliveries WHERE subscription_id = ? AND event_id = ?"
DELIVERIES_SELECT = f"SELECT {_DELIVERY_COLS} FROM deliveries_by_time WHERE subscription_id = ?"

AGGREGATE_INSERT = (
    "INSERT INTO daily_aggregates (station_id, metric, day, mean, max, count, hours, complete)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_AGG_COLS = "station_id, metric, day, mean, max, count, hours, complete"
AGGREGATES_SELECT = f"SELECT {_AGG_COLS} FROM daily_aggregates WHERE station_id = ?"
AGGREGATES_SELECT_METRIC = f"SELECT {_AGG_COLS} FROM daily_aggregates WHERE station_id = ? AND metric = ?"

TABLES = (
    "readings", "stations", "alerts_by_id", "alerts_by_day", "alerts_by_station", "subscriptions", "deliveries",
    "deliveries_by_time", "daily_aggregates", "area_subscriptions", "area_subscriptions_by_status",
    "area_subscriptions_by_email",
)


def prepared_statements() -> dict[str, str]:
    """Every statement the store prepares, by constant name (the offline CQL syntax test parses them all)."""
    return {name: value for name, value in globals().items()
            if name.isupper() and not name.startswith("_") and isinstance(value, str)}


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, cql) of every packaged migration ``store/cql/NNN_name.cql``, in order."""
    found = []
    for entry in resources.files("citysense_common.store").joinpath("cql").iterdir():
        if entry.name.endswith(".cql"):
            version, _, name = entry.name.removesuffix(".cql").partition("_")
            found.append((int(version), name, entry.read_text(encoding="utf-8")))
    found.sort()
    if len({v for v, _, _ in found}) != len(found):
        raise StoreError("duplicate migration versions in store/cql")
    return found


def split_cql(script: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at a ``;`` that ends a line.

    Deliberately simple (the runtime must not depend on cqlsh); the files' convention is documented in them and
    the offline test checks this split against cqlshlib's own statement splitter.
    """
    statements, current = [], []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line.rstrip())
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip()[:-1].strip())
            current = []
    if current:
        raise StoreError(f"migration ends without ';': {' '.join(current)[:80]!r}")
    return statements


# ---------------------------------------------------------------------- pure helpers (tested offline)


def reading_days(start: datetime, end: datetime) -> list[date]:
    """UTC days whose partitions can hold ``start <= ts < end``, newest first (the read order)."""
    if to_ms(end) <= to_ms(start):
        return []
    first, last = day_of(start), day_of(utc(end) - timedelta(milliseconds=1))
    return [last - timedelta(days=n) for n in range((last - first).days + 1)]


def alert_write_timestamp(alert: AlertRecord) -> int:
    """Cell timestamp (µs) for an alert's rows: newer updated_at wins; at a tie the resolution wins."""
    return to_ms(alert.updated_at) * 1000 + (1 if alert.state == "resolved" else 0)


def encode_paging_state(state: bytes | None) -> str | None:
    return None if state is None else base64.urlsafe_b64encode(state).decode()


def decode_paging_state(value: str | None) -> bytes | None:
    if value is None:
        return None
    try:
        return base64.urlsafe_b64decode(value.encode())
    except (binascii.Error, ValueError):
        raise InvalidCursor("malformed paging state") from None


def _fingerprint(*parts: object) -> str:
    import hashlib

    return hashlib.blake2s(repr(parts).encode(), digest_size=6).hexdigest()


def _aware(value: datetime | None) -> datetime | None:
    # The driver returns naive datetimes in UTC.
    return None if value is None else utc(value)


def _ms_dt(value: datetime | None) -> datetime | None:
    # Truncate before binding so what is written equals what the SQLite store keeps.
    return None if value is None else utc(value)


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class CassandraStore:
    """The :class:`~citysense_common.store.base.Store` on Cassandra.

    ``session`` (and the two concurrent executors) may be injected; production code passes only settings and the
    store connects itself. Call :meth:`migrate` (``open_store`` does) before use: it creates the keyspace.
    """

    def __init__(self, settings: StoreSettings, session: Any = None, *,
                 execute_concurrent: Callable[..., Any] | None = None,
                 execute_concurrent_with_args: Callable[..., Any] | None = None) -> None:
        self.settings = settings
        self.keyspace = settings.cassandra_keyspace
        self._cluster: Any = None
        self._session = session if session is not None else self._connect()
        if execute_concurrent is None or execute_concurrent_with_args is None:
            from cassandra.concurrent import execute_concurrent as _ec
            from cassandra.concurrent import execute_concurrent_with_args as _eca

            execute_concurrent = execute_concurrent or _ec
            execute_concurrent_with_args = execute_concurrent_with_args or _eca
        self._concurrent = execute_concurrent
        self._concurrent_args = execute_concurrent_with_args
        self._prepared: dict[str, Any] = {}

    # ------------------------------------------------------------------ driver boundary

    def execution_profile(self) -> Any:
        """Consistency, routing and timeouts from settings, for every statement of this store."""
        from cassandra import ConsistencyLevel
        from cassandra.cluster import ExecutionProfile
        from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
        from cassandra.query import tuple_factory

        s = self.settings
        return ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=s.cassandra_local_dc)),
            consistency_level=ConsistencyLevel.name_to_value[s.cassandra_consistency],
            # LWTs (subscriptions only) stay inside the local DC like everything else.
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=s.cassandra_request_timeout_s,
            row_factory=tuple_factory,  # rows as tuples: the converters below index columns
        )

    def _connect(self) -> Any:
        s = self.settings
        if not s.cassandra_hosts:
            raise StoreError("CITYSENSE_CASSANDRA_HOSTS is empty: set the contact points, e.g. cassandra-0,cassandra-1")
        try:
            from cassandra.auth import PlainTextAuthProvider
            from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster
        except ImportError as exc:
            raise StoreError("CITYSENSE_STORE=cassandra needs cassandra-driver: pip install "
                             "'citysense-common[cassandra]'") from exc
        auth = None
        if s.cassandra_username:
            password = s.cassandra_password.get_secret_value() if s.cassandra_password else ""
            auth = PlainTextAuthProvider(username=s.cassandra_username, password=password)
        self._cluster = Cluster(contact_points=s.cassandra_hosts, port=s.cassandra_port, auth_provider=auth,
                                execution_profiles={EXEC_PROFILE_DEFAULT: self.execution_profile()})
        try:
            return self._cluster.connect()
        except Exception as exc:
            self._cluster.shutdown()
            self._cluster = None
            raise StoreError(f"cannot connect to Cassandra at {s.cassandra_hosts}: {exc}") from exc

    def _use_keyspace(self) -> None:
        if getattr(self._session, "keyspace", None) != self.keyspace:
            self._guard(self._session.set_keyspace, self.keyspace)

    def _stmt(self, cql: str) -> Any:
        prepared = self._prepared.get(cql)
        if prepared is None:
            self._use_keyspace()
            prepared = self._prepared[cql] = self._guard(self._session.prepare, cql)
        return prepared

    def _guard(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Driver errors become StoreError, so callers handle one exception type for both backends."""
        try:
            return call(*args, **kwargs)
        except (StoreError, ValueError, TypeError):
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("cassandra"):
                raise StoreError(f"Cassandra: {exc}") from exc
            raise

    def _execute(self, cql: str, params: Sequence[Any] = (), **kwargs: Any) -> Any:
        return self._guard(self._session.execute, self._stmt(cql), params, **kwargs)

    def _write_many(self, cql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self._guard(self._concurrent_args, self._session, self._stmt(cql), rows,
                        concurrency=self.settings.cassandra_write_concurrency, raise_on_first_error=True)

    def _write_pairs(self, pairs: list[tuple[str, Sequence[Any]]]) -> None:
        if pairs:
            statements = [(self._stmt(cql), params) for cql, params in pairs]
            self._guard(self._concurrent, self._session, statements,
                        concurrency=self.settings.cassandra_write_concurrency, raise_on_first_error=True)

    def _scan(self, fingerprint: str, partitions: list[tuple[str, tuple[Any, ...]]], keep: Callable[[Any], bool],
              convert: Callable[[Any], T], limit: int, cursor: str | None) -> Page[T]:
        """Read partitions in order, paging with the driver's paging state; filters applied client-side.

        Each fetch asks for exactly the rows still missing from the page and takes all of them, so the paging
        state always points just behind the last row returned: nothing is skipped or repeated across pages.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        index, paging_state = 0, None
        if cursor is not None:
            position = decode_cursor(cursor, ("q", "i", "p"))
            if position["q"] != fingerprint or not isinstance(position["i"], int):
                raise InvalidCursor("cursor belongs to a different query")
            index, paging_state = position["i"], decode_paging_state(position["p"])
        items: list[T] = []
        while index < len(partitions) and len(items) < limit:
            cql, params = partitions[index]
            bound = self._stmt(cql).bind(params)
            bound.fetch_size = limit - len(items)
            result = self._guard(self._session.execute, bound, paging_state=paging_state)
            items += [convert(row) for row in result.current_rows if keep(row)]
            paging_state = result.paging_state
            if paging_state is None:
                index += 1
        if index >= len(partitions):
            return Page(items, None)
        return Page(items, encode_cursor({"q": fingerprint, "i": index, "p": encode_paging_state(paging_state)}))

    # ------------------------------------------------------------------ lifecycle

    def keyspace_cql(self) -> str:
        replication = ", ".join(f"'{k}': {v!r}" if isinstance(v, int) else f"'{k}': '{v}'"
                                for k, v in self.settings.replication_map().items())
        return f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = {{{replication}}}"

    def ttl_cql(self) -> str:
        return f"ALTER TABLE readings WITH default_time_to_live = {self.settings.readings_ttl_days * 86400}"

    def migrate(self) -> None:
        """Create the keyspace, apply unrecorded CQL migrations in order, then set the readings TTL.

        Every DDL statement is IF NOT EXISTS, so a run interrupted between a statement and its migration record is
        simply repeated. Run it from one process at a time (e.g. an init container) on a fresh cluster:
        concurrent schema changes can disagree until Cassandra settles them.
        """
        self._guard(self._session.execute, self.keyspace_cql())
        self._use_keyspace()
        self._guard(self._session.execute, MIGRATIONS_CREATE)
        applied = {row[0] for row in self._execute(MIGRATIONS_SELECT)}
        for version, name, script in migration_files():
            if version in applied:
                continue
            for statement in split_cql(script):
                self._guard(self._session.execute, statement)
            self._execute(MIGRATION_INSERT, (version, name, utc(datetime.now(UTC))))
        wanted = self.settings.readings_ttl_days * 86400
        rows = list(self._execute(TABLE_TTL_SELECT, (self.keyspace,)))
        if not rows or rows[0][0] != wanted:  # ALTER only when needed: schema changes are not free
            self._guard(self._session.execute, self.ttl_cql())

    def applied_migrations(self) -> list[int]:
        return sorted(row[0] for row in self._execute(MIGRATIONS_SELECT))

    def ping(self) -> None:
        self._guard(self._session.execute, "SELECT release_version FROM system.local")

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.shutdown()
            self._cluster = None

    def truncate_all(self) -> None:
        """Empty every table (tests against a throwaway keyspace).

        Only tables holding a row are truncated: a TRUNCATE flushes and coordinates (~0.1 s each on a dev node),
        a one-row probe of an empty table costs a millisecond, and most tests write to few tables.
        """
        self._use_keyspace()
        for table in TABLES:
            if self._guard(self._session.execute, f"SELECT * FROM {table} LIMIT 1").one() is not None:
                self._guard(self._session.execute, f"TRUNCATE {table}")

    def drop_keyspace(self) -> None:
        self._guard(self._session.execute, f"DROP KEYSPACE IF EXISTS {self.keyspace}")

    # ------------------------------------------------------------------ readings and stations

    def write_readings(self, readings: Sequence[EnrichedReading]) -> None:
        self._write_many(READING_INSERT, (
            (r.station_id, day_of(r.ts), utc(r.ts), r.seq, r.metrics, r.lat, r.lon, list(r.outliers) or None,
             r.zscores or None, list(r.faults) or None, r.late, _ms_dt(r.ingested_at))
            for r in readings
        ))

    def write_reading_batch(self, batch: ReadingBatch) -> None:
        self.write_readings(list(batch.rows()))  # the driver binds one statement per row either way

    def read_readings(self, station_id: str, start: datetime, end: datetime, metric: str | None = None,
                      limit: int = 100, cursor: str | None = None) -> Page[EnrichedReading]:
        """Readings with ``start <= ts < end``, newest first (ties by seq); ``metric`` keeps readings that have it."""
        start, end = utc(start), utc(end)
        partitions = [(READINGS_SELECT, (station_id, day, start, end)) for day in reading_days(start, end)]
        return self._scan(
            _fingerprint("readings", station_id, to_ms(start), to_ms(end), metric), partitions,
            (lambda row: bool(row[3]) and metric in row[3]) if metric is not None else (lambda row: True),
            _reading, limit, cursor,
        )

    def upsert_stations(self, stations: Sequence[StationRecord]) -> None:
        pairs: list[tuple[str, Sequence[Any]]] = []
        for s in stations:
            pairs.append((STATION_UPDATE_READING, (to_ms(s.last_seen) * 1000, utc(s.last_seen), s.last_seq,
                                                   s.latest, s.lat, s.lon, s.station_id)))
            status_time = s.status_changed_at or s.last_seen
            pairs.append((STATION_UPDATE_STATUS, (to_ms(status_time) * 1000, s.status,
                                                  _ms_dt(s.status_changed_at), s.station_id)))
        self._write_pairs(pairs)

    def set_station_status(self, station_id: str, status: StationState, at: datetime) -> None:
        # Read first: an UPDATE alone would create a half row for an unknown station.
        if self.get_station(station_id) is None:
            raise NotFound(f"station {station_id!r}")
        self._execute(STATION_UPDATE_STATUS, (to_ms(at) * 1000, status, utc(at), station_id))

    def get_station(self, station_id: str) -> StationRecord | None:
        rows = list(self._execute(STATION_SELECT, (station_id,)))
        return _station(rows[0]) if rows and rows[0][1] is not None else None

    def list_stations(self) -> list[StationRecord]:
        # Full scan of a small table (one row per station of one city).
        stations = [_station(row) for row in self._execute(STATIONS_SELECT) if row[1] is not None]
        return sorted(stations, key=lambda s: s.station_id)

    # ------------------------------------------------------------------ alerts

    def upsert_alerts(self, alerts: Sequence[AlertRecord]) -> None:
        pairs: list[tuple[str, Sequence[Any]]] = []
        for a in alerts:
            values = (
                a.alert_id, a.station_id, a.rule_id, a.kind, a.severity, a.state, utc(a.opened_at),
                utc(a.updated_at), a.message, a.last_event_id, a.metric, a.value, a.threshold, a.window, a.lat,
                a.lon, _ms_dt(a.resolved_at),
            )
            stamp = alert_write_timestamp(a)
            pairs += [
                (ALERT_INSERT_BY_ID, (*values, stamp)),
                (ALERT_INSERT_BY_STATION, (*values, stamp)),
                (ALERT_INSERT_BY_DAY, (day_of(a.opened_at), *values, stamp)),
            ]
        self._write_pairs(pairs)

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        rows = list(self._execute(ALERT_SELECT, (alert_id,)))
        return _alert(rows[0]) if rows else None

    def alert_partitions(self, query: AlertQuery, newest: date | None = None) -> list[tuple[str, tuple[Any, ...]]]:
        """The partition-bounded queries answering ``query``, newest partition first.

        ``newest`` pins the first day partition (cursors carry it, so later pages use the same day list even when
        "today" has moved on); by default tomorrow (UTC), to tolerate clock skew between writers and readers.
        """
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        since = utc(query.since) if query.since is not None else epoch
        if query.station_id is not None:
            return [(ALERTS_SELECT_STATION, (query.station_id, since))]
        newest = newest or day_of(datetime.now(UTC)) + timedelta(days=1)
        # Without `since`, a bounded lookback (CITYSENSE_ALERTS_LOOKBACK_DAYS) keeps the scan finite.
        lookback = timedelta(days=self.settings.alerts_lookback_days)
        oldest = day_of(since) if query.since is not None else newest - lookback
        return [(ALERTS_SELECT_DAY, (newest - timedelta(days=n), since)) for n in range((newest - oldest).days + 1)]

    def list_alerts(self, query: AlertQuery) -> Page[AlertRecord]:
        def keep(row: Any) -> bool:
            # Row columns as in _ALERT_COLS: 3 kind, 4 severity, 5 state, 14 lat, 15 lon.
            return ((query.state == "all" or row[5] == query.state)
                    and (query.severity is None or row[4] == query.severity)
                    and (query.kind is None or row[3] == query.kind)
                    and (query.bbox is None or in_bbox(row[15], row[14], query.bbox)))

        since = to_ms(query.since) if query.since is not None else None
        fingerprint = _fingerprint("alerts", query.state, query.severity, query.kind, query.station_id, query.bbox,
                                   since)
        newest = None
        if query.cursor is not None and query.station_id is None:
            pinned = decode_cursor(query.cursor, ("q", "i", "p")).get("d0")
            try:
                newest = date.fromisoformat(pinned) if isinstance(pinned, str) else None
            except ValueError:
                raise InvalidCursor("malformed cursor") from None
        partitions = self.alert_partitions(query, newest)
        page = self._scan(fingerprint, partitions, keep, _alert, query.limit, query.cursor)
        if page.next_cursor is not None and query.station_id is None:
            position = decode_cursor(page.next_cursor, ("q", "i", "p"))
            position["d0"] = partitions[0][1][0].isoformat()
            return Page(page.items, encode_cursor(position))
        return page

    # ------------------------------------------------------------------ subscriptions and deliveries

    def create_subscription(self, subscription: Subscription) -> None:
        s = subscription
        created = utc(s.created_at or datetime.now(UTC))
        self._execute(SUBSCRIPTION_INSERT, (s.id, s.url, s.secret, s.description, _dumps(s.filters), s.status,
                                            created, utc(s.updated_at) if s.updated_at else created))

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        rows = list(self._execute(SUBSCRIPTION_SELECT, (subscription_id,)))
        return _subscription(rows[0]) if rows else None

    def list_subscriptions(self, status: SubscriptionStatus | None = None) -> list[Subscription]:
        subs = [_subscription(row) for row in self._execute(SUBSCRIPTIONS_SELECT)]
        subs = [s for s in subs if status is None or s.status == status]
        return sorted(subs, key=lambda s: (s.created_at or datetime.min.replace(tzinfo=UTC), s.id))

    def update_subscription(self, subscription: Subscription) -> None:
        s = subscription
        result = self._execute(SUBSCRIPTION_UPDATE, (s.url, s.secret, s.description, _dumps(s.filters), s.status,
                                                     utc(s.updated_at or datetime.now(UTC)), s.id))
        if not result.was_applied:
            raise NotFound(f"subscription {s.id!r}")

    def delete_subscription(self, subscription_id: str) -> bool:
        return bool(self._execute(SUBSCRIPTION_DELETE, (subscription_id,)).was_applied)

    def record_delivery(self, delivery: Delivery) -> None:
        """Upsert by (subscription_id, event_id); the newest updated_at wins. Keep webhook_id and created_at stable
        across a delivery's updates (the notifier does): created_at is part of the listing table's key."""
        d = delivery
        values = (d.subscription_id, d.event_id, d.webhook_id, d.status, d.attempts, utc(d.created_at),
                  utc(d.updated_at), d.event_type, d.last_status_code, d.last_error, _ms_dt(d.next_attempt_at),
                  to_ms(d.updated_at) * 1000)
        self._write_pairs([(DELIVERY_INSERT, values), (DELIVERY_INSERT_BY_TIME, values)])

    def get_delivery(self, subscription_id: str, event_id: str) -> Delivery | None:
        rows = list(self._execute(DELIVERY_SELECT, (subscription_id, event_id)))
        return _delivery(rows[0]) if rows else None

    def list_deliveries(self, subscription_id: str, limit: int = 100,
                        cursor: str | None = None) -> Page[Delivery]:
        return self._scan(_fingerprint("deliveries", subscription_id),
                          [(DELIVERIES_SELECT, (subscription_id,))], lambda row: True, _delivery, limit, cursor)

    # ------------------------------------------------------------------ citizens' area subscriptions

    def create_area_subscription(self, subscription: AreaSubscription) -> None:
        """Insert if absent (a lightweight transaction): creating the same id again changes nothing."""
        a = subscription
        self._execute(AREA_INSERT, (a.id, a.email, a.lat, a.lon, a.radius_km, a.min_severity, a.language, a.status,
                                    utc(a.created_at or datetime.now(UTC)), _ms_dt(a.confirmed_at)))
        self._write_area_copies(a.id)

    def get_area_subscription(self, subscription_id: str) -> AreaSubscription | None:
        rows = list(self._execute(AREA_SELECT, (subscription_id,)))
        return _area_subscription(rows[0]) if rows else None

    def list_area_subscriptions(self, status: AreaSubscriptionStatus | None = None,
                                email: str | None = None) -> list[AreaSubscription]:
        """Oldest first (ties by id). By email: one partition; by status: one partition; neither: a full scan
        (tests and operators only, no service lists them all)."""
        if email is not None:
            rows = self._execute(AREAS_SELECT_EMAIL, (email,))
        elif status is not None:
            rows = self._execute(AREAS_SELECT_STATUS, (status,))
        else:
            rows = self._execute(AREAS_SELECT)
        found = [_area_subscription(row) for row in rows]
        found = [a for a in found if status is None or a.status == status]
        return sorted(found, key=lambda a: (a.created_at or datetime.min.replace(tzinfo=UTC), a.id))

    def update_area_subscription(self, subscription: AreaSubscription) -> None:
        """Replace every field but ``created_at``. NotFound if missing."""
        a = subscription
        before = self.get_area_subscription(a.id)
        result = self._execute(AREA_UPDATE, (a.email, a.lat, a.lon, a.radius_km, a.min_severity, a.language,
                                             a.status, _ms_dt(a.confirmed_at), a.id))
        if not result.was_applied:
            raise NotFound(f"area subscription {a.id!r}")
        if before is not None and before.email != a.email:
            self._execute(AREA_DELETE_BY_EMAIL, (before.email, a.id))
        self._write_area_copies(a.id)

    def delete_area_subscription(self, subscription_id: str) -> bool:
        """True if it existed. Every copy found under the id goes too, even when the row by id is already gone
        (a write that raced a delete cannot leave a copy the notifier would still mail)."""
        emails = {row[0] for status in AREA_STATUSES
                  for row in self._execute(AREA_EMAIL_BY_STATUS, (status, subscription_id))}
        before = self.get_area_subscription(subscription_id)
        if before is not None:
            emails.add(before.email)
        existed = bool(self._execute(AREA_DELETE, (subscription_id,)).was_applied)
        self._write_pairs([(AREA_DELETE_BY_STATUS, (status, subscription_id)) for status in AREA_STATUSES]
                          + [(AREA_DELETE_BY_EMAIL, (email, subscription_id)) for email in emails])
        return existed

    def _write_area_copies(self, subscription_id: str) -> None:
        """The by-status and by-email copies of the row as stored (idempotent: a retry repairs a half write)."""
        a = self.get_area_subscription(subscription_id)
        if a is None:
            return
        values = (a.id, a.email, a.lat, a.lon, a.radius_km, a.min_severity, a.language, a.status,
                  _ms_dt(a.created_at), _ms_dt(a.confirmed_at))
        self._write_pairs([(AREA_INSERT_BY_STATUS, values), (AREA_INSERT_BY_EMAIL, values)]
                          + [(AREA_DELETE_BY_STATUS, (status, a.id)) for status in AREA_STATUSES
                             if status != a.status])

    # ------------------------------------------------------------------ daily aggregates

    def write_daily_aggregates(self, aggregates: Sequence[DailyAggregate]) -> None:
        self._write_many(AGGREGATE_INSERT, (
            (a.station_id, a.metric, a.day, a.mean, a.max, a.count, a.hours, a.complete) for a in aggregates
        ))

    def read_daily_aggregates(self, station_id: str, metric: str | None = None, start_day: str | None = None,
                              end_day: str | None = None) -> list[DailyAggregate]:
        if metric is None:
            rows = self._execute(AGGREGATES_SELECT, (station_id,))
        else:
            rows = self._execute(AGGREGATES_SELECT_METRIC, (station_id, metric))
        return [
            DailyAggregate(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows
            if (start_day is None or r[2] >= start_day) and (end_day is None or r[2] <= end_day)
        ]


# ---------------------------------------------------------------------- row -> record (tuple rows)


def _reading(row: Any) -> EnrichedReading:
    return EnrichedReading(
        station_id=row[0], ts=utc(row[1]), seq=row[2], metrics=dict(row[3] or {}), lat=row[4], lon=row[5],
        outliers=tuple(row[6] or ()), zscores=dict(row[7] or {}), faults=tuple(row[8] or ()), late=bool(row[9]),
        ingested_at=_aware(row[10]),
    )


def _station(row: Any) -> StationRecord:
    return StationRecord(
        station_id=row[0], last_seen=utc(row[1]), last_seq=row[2], latest=dict(row[3] or {}), lat=row[4],
        lon=row[5], status=row[6] or "active", status_changed_at=_aware(row[7]),
    )


def _alert(row: Any) -> AlertRecord:
    return AlertRecord(
        alert_id=row[0], station_id=row[1], rule_id=row[2], kind=row[3], severity=row[4], state=row[5],
        opened_at=utc(row[6]), updated_at=utc(row[7]), message=row[8], last_event_id=row[9], metric=row[10],
        value=row[11], threshold=row[12], window=row[13], lat=row[14], lon=row[15], resolved_at=_aware(row[16]),
    )


def _subscription(row: Any) -> Subscription:
    return Subscription(
        id=row[0], url=row[1], secret=row[2], description=row[3] or "", filters=json.loads(row[4] or "{}"),
        status=row[5], created_at=_aware(row[6]), updated_at=_aware(row[7]),
    )


def _area_subscription(row: Any) -> AreaSubscription:
    return AreaSubscription(
        id=row[0], email=row[1], lat=row[2], lon=row[3], radius_km=row[4], min_severity=row[5], language=row[6],
        status=row[7], created_at=_aware(row[8]), confirmed_at=_aware(row[9]),
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        subscription_id=row[0], event_id=row[1], webhook_id=row[2], status=row[3], attempts=row[4],
        created_at=utc(row[5]), updated_at=utc(row[6]), event_type=row[7] or "", last_status_code=row[8],
        last_error=row[9], next_attempt_at=_aware(row[10]),
    )
