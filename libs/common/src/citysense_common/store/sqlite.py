# ruff: noqa: S608  -- SQL text is built only from module constants (column lists); every value is bound.
"""Embedded store on SQLite (WAL): the default for a laptop, CI and a single-node deployment.

Concurrency model: one connection per thread (and per process: a forked child never reuses its parent's
connection). WAL lets readers run while one writer commits; writers from several processes serialize on the
database lock, waiting up to ``busy_timeout``. Every write transaction starts with ``BEGIN IMMEDIATE`` so it takes
the write lock up front instead of upgrading a read lock mid-transaction, which in WAL mode fails with
SQLITE_BUSY without waiting.

Retention: readings expire ``readings_days`` after they were written (``ingested_at``), as Cassandra's table TTL
does; resolved alerts and delivered/dead deliveries after their own (opt-in) retention. The process that writes
readings (the scorer) applies it from its write path, at most every ``interval_s`` and in chunks of ``chunk_rows``
rows within a ``budget_s`` time budget per write, so a backlog is worked off a little at every micro-batch instead
of stalling one. Deleted pages are reused by later writes: the file stops growing, it does not shrink.

A full disk makes writes fail with :class:`StoreFull`; reads go on, and ``ping`` (readiness) fails while the
filesystem has less than ``min_free_bytes`` free. The free and total bytes of the store's filesystem are the
Prometheus gauges ``citysense_store_filesystem_free_bytes`` / ``_size_bytes`` (label ``path``) in the default
registry, served by whichever process exposes it (the scorer, the notifier).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import weakref
from array import array
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from citysense_common.store._util import (
    decode_cursor,
    encode_cursor,
    from_ms,
    opt_from_ms,
    opt_ms,
    to_ms,
)
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
    StoreFull,
    Subscription,
    SubscriptionStatus,
)
from citysense_common.store.reading_batch import ReadingBatch
from citysense_common.store.settings import StoreSettings

log = logging.getLogger(__name__)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every packaged migration, in order. File names are ``NNN_name.sql``."""
    found = []
    for entry in resources.files("citysense_common.store").joinpath("sql").iterdir():
        if entry.name.endswith(".sql"):
            version, _, name = entry.name.removesuffix(".sql").partition("_")
            found.append((int(version), name, entry.read_text(encoding="utf-8")))
    found.sort()
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise StoreError(f"duplicate migration versions in store/sql: {versions}")
    return found


def split_sql(script: str) -> list[str]:
    """Complete statements of a script (sqlite3.complete_statement knows about strings, comments, triggers)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in current.splitlines()
    ):
        raise StoreError(f"incomplete SQL statement at end of migration: {current.strip()[:80]!r}")
    return statements


def _fingerprint(*parts: object) -> str:
    """Short hash of a query, stored in its cursors so a cursor is refused for a different query."""
    return hashlib.blake2s(repr(parts).encode(), digest_size=6).hexdigest()


def _json_or_none(value: Any) -> str | None:
    return _dumps(value) if value else None


def _latest_json(latest: dict[str, float]) -> str:
    """A station's latest values as JSON: orjson, ~15x faster than the json module's encoder for the float maps the
    scorer writes for every station of every micro-batch (32 -> 2 ms at 5,000 stations). It writes NaN as null where
    the json module refused it; a NaN is refused here too (``latest`` holds only the values a reading carried)."""
    text = orjson.dumps(latest)
    if b":null" in text:  # keys are metric names (no quotes or colons): only a NaN/inf value writes this
        raise ValueError(f"latest values must be finite numbers: {latest}")
    return text.decode()


def _json_list(names: Sequence[str]) -> str | None:
    return orjson.dumps(list(names)).decode() if len(names) else None


def _zscore_json(batch: ReadingBatch) -> list[str | None]:
    """The ``zscores`` JSON object per row (None when a row has none), as ``write_readings`` writes it.

    Rows share few patterns of which z-scores they carry (all of them; all but the station baselines not learned
    yet; ...), so the columns a row keeps are picked once per pattern, not by a mask per row. A NaN or infinite z
    is left out (JSON has no spelling for either)."""
    z = batch.zscores
    present = np.isfinite(z)
    used = present.any(axis=0)  # e.g. the station baselines' z before they are learned: absent in every row
    out: list[str | None] = [None] * len(batch)
    if not used.any():
        return out
    keys = np.array(batch.z_names, dtype=object)[used]
    z, present = z[:, used], present[:, used]
    # a row's pattern as one integer per 62 columns (a registry has a few dozen metrics, z for each twice)
    chunks = [present[:, a:a + 62] @ (1 << np.arange(min(62, present.shape[1] - a), dtype=np.int64))
              for a in range(0, present.shape[1], 62)]
    _, first, which = np.unique(np.stack(chunks, axis=1), axis=0, return_index=True, return_inverse=True)
    if len(first) * 8 > len(z):  # hardly a pattern shared: a mask per row is cheaper than one pass per pattern
        return [orjson.dumps(dict(zip(keys[p].tolist(), values[p].tolist(), strict=True))).decode() if p.any()
                else None for values, p in zip(z, present, strict=True)]
    which = which.reshape(-1)  # numpy 2.0/2.1 return it with the unique axis kept
    for k, row in enumerate(first.tolist()):
        cols = np.flatnonzero(present[row])
        if not len(cols):
            continue
        names, rows = keys[cols].tolist(), np.flatnonzero(which == k)
        for i, values in zip(rows.tolist(), z[np.ix_(rows, cols)].tolist(), strict=True):
            out[i] = orjson.dumps(dict(zip(names, values, strict=True))).decode()
    return out


_READING_COLUMNS = (
    "station_id, ts, seq, metric_names, metric_values, lat, lon, outliers, zscores, faults, late, ingested_at"
)
_READING_INSERT = f"INSERT OR IGNORE INTO readings ({_READING_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
_BIG_ENDIAN = sys.byteorder == "big"
WRITER_CACHE_KIB = 32 * 1024
WRITER_WAL_PAGES = 10_000
# Writers queue for the database lock in short steps of their own. SQLite's busy handler sleeps in growing steps (up
# to 100 ms), so a one-row write (an alert the API records, a delivery the notifier logs) that arrives while the
# scorer commits a batch would wait up to 100 ms past the lock's release. And no write holds the lock long: readings
# are committed in chunks of WRITE_CHUNK_ROWS (every write is idempotent, so a batch needs no single transaction;
# a batch cut short by a crash is replayed whole).
LOCK_POLL_S = 0.001
WRITE_CHUNK_ROWS = 500


def _pack_metrics(metrics: dict[str, float]) -> tuple[str, bytes]:
    names = ",".join(metrics)
    if names.count(",") != max(len(metrics) - 1, 0):
        raise StoreError(f"metric names must not contain a comma: {sorted(metrics)}")
    values = array("d", metrics.values())
    if _BIG_ENDIAN:
        values.byteswap()
    return names, values.tobytes()


def _unpack_metrics(names: str, blob: bytes) -> dict[str, float]:
    if not names:
        return {}
    values = array("d")
    values.frombytes(blob)
    if _BIG_ENDIAN:
        values.byteswap()
    return dict(zip(names.split(","), values, strict=True))

# The reading columns move only to a strictly newer (last_seen, last_seq); the status columns only to a
# newer-or-equal status time. SET expressions all see the old row, so each column decides independently.
_NEWER_READING = "(excluded.last_seen, excluded.last_seq) > (stations.last_seen, stations.last_seq)"
_NEWER_STATUS = "excluded.status_ts >= stations.status_ts"
_STATION_UPSERT = f"""
INSERT INTO stations (station_id, last_seen, last_seq, latest, lat, lon, status, status_changed_at, status_ts)
VALUES (?,?,?,?,?,?,?,?,?)
ON CONFLICT (station_id) DO UPDATE SET
    last_seen = CASE WHEN {_NEWER_READING} THEN excluded.last_seen ELSE stations.last_seen END,
    last_seq = CASE WHEN {_NEWER_READING} THEN excluded.last_seq ELSE stations.last_seq END,
    latest = CASE WHEN {_NEWER_READING} THEN excluded.latest ELSE stations.latest END,
    lat = CASE WHEN {_NEWER_READING} THEN excluded.lat ELSE stations.lat END,
    lon = CASE WHEN {_NEWER_READING} THEN excluded.lon ELSE stations.lon END,
    status = CASE WHEN {_NEWER_STATUS} THEN excluded.status ELSE stations.status END,
    status_changed_at = CASE WHEN {_NEWER_STATUS} THEN excluded.status_changed_at
                             ELSE stations.status_changed_at END,
    status_ts = CASE WHEN {_NEWER_STATUS} THEN excluded.status_ts ELSE stations.status_ts END
"""
_STATION_COLUMNS = "station_id, last_seen, last_seq, latest, lat, lon, status, status_changed_at"

_ALERT_COLUMNS = (
    "alert_id, station_id, rule_id, kind, severity, state, opened_at, updated_at, message, last_event_id,"
    " metric, value, threshold, window, lat, lon, resolved_at"
)
# Newer event wins; at an equal updated_at a resolution wins over an update (same rule as the Cassandra store).
_ALERT_UPSERT = f"""
INSERT INTO alerts ({_ALERT_COLUMNS}) VALUES ({",".join("?" * 17)})
ON CONFLICT (alert_id) DO UPDATE SET
    {", ".join(f"{c.strip()} = excluded.{c.strip()}" for c in _ALERT_COLUMNS.split(",")[1:])}
WHERE (excluded.updated_at, excluded.state = 'resolved') > (alerts.updated_at, alerts.state = 'resolved')
"""

_SUBSCRIPTION_COLUMNS = "id, url, secret, description, filters, status, created_at, updated_at"
_AREA_COLUMNS = "id, email, lat, lon, radius_km, min_severity, language, status, created_at, confirmed_at"
_DELIVERY_COLUMNS = (
    "subscription_id, event_id, webhook_id, status, attempts, created_at, updated_at, event_type,"
    " last_status_code, last_error, next_attempt_at"
)
# webhook_id and created_at are the delivery's identity for receivers and ordering: the first write fixes them.
# An update older than the stored one (by updated_at) is ignored, so a slow retry cannot undo "delivered".
_DELIVERY_UPSERT = f"""
INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES ({",".join("?" * 11)})
ON CONFLICT (subscription_id, event_id) DO UPDATE SET
    status = excluded.status, attempts = excluded.attempts, updated_at = excluded.updated_at,
    event_type = excluded.event_type, last_status_code = excluded.last_status_code,
    last_error = excluded.last_error, next_attempt_at = excluded.next_attempt_at
WHERE excluded.updated_at >= deliveries.updated_at
"""
_AGGREGATE_UPSERT = (
    "INSERT OR REPLACE INTO daily_aggregates (station_id, metric, day, mean, max, count, hours, complete)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


DAY_MS = 86_400_000


@dataclass(frozen=True)
class Retention:
    """What the SQLite store deletes and how often (0 days: keep that table's rows forever)."""

    readings_days: int = 0  # readings written (ingested_at) longer ago; a row without ingested_at is kept
    alerts_days: int = 0  # resolved alerts last updated longer ago (an active alert is never deleted)
    deliveries_days: int = 0  # delivered and dead deliveries last updated longer ago
    interval_s: float = 600.0  # between runs
    chunk_rows: int = 5000  # rows looked at per transaction (the write lock is held for one chunk at a time)
    budget_s: float = 0.25  # per run; a run that does not finish in it continues at the next write

    @property
    def enabled(self) -> bool:
        return bool(self.readings_days or self.alerts_days or self.deliveries_days)


class _FilesystemGauges:
    """``citysense_store_filesystem_free_bytes`` and ``_size_bytes`` of every open SQLite store of the process,
    read (statvfs) when Prometheus scrapes."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.registered = False

    def add(self, store: SQLiteStore) -> None:
        with self.lock:
            self.stores.add(store)
            if not self.registered:
                from prometheus_client import REGISTRY

                REGISTRY.register(self)
                self.registered = True

    def describe(self) -> list[Any]:
        return list(self._families({}))

    def collect(self) -> Iterator[Any]:
        with self.lock:
            stores = list(self.stores)
        found: dict[str, tuple[int, int]] = {}
        for store in stores:
            usage = store.filesystem_usage()
            if usage is not None:
                found[str(store.path)] = usage
        yield from self._families(found)

    @staticmethod
    def _families(found: dict[str, tuple[int, int]]) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        free = GaugeMetricFamily("citysense_store_filesystem_free_bytes", "bytes available to the store on the "
                                 "filesystem of its SQLite file", labels=["path"])
        size = GaugeMetricFamily("citysense_store_filesystem_size_bytes", "size of the filesystem of the store's "
                                 "SQLite file", labels=["path"])
        for path, (available, total) in sorted(found.items()):
            free.add_metric([path], available)
            size.add_metric([path], total)
        yield free
        yield size


_GAUGES = _FilesystemGauges()


def _disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == sqlite3.SQLITE_FULL) or "disk is full" in str(exc)


class SQLiteStore:
    """The :class:`~citysense_common.store.base.Store` on one SQLite file."""

    def __init__(self, path: Path | str, busy_timeout_ms: int = 30_000, retention: Retention | None = None,
                 min_free_bytes: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.retention = retention or Retention()
        self.min_free_bytes = min_free_bytes
        self._clock = clock
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._closed = False
        self._retention_lock = threading.Lock()
        self._next_expiry = float("-inf")
        self._readings_cursor = 0  # rowid up to which readings were looked at and are kept (not expirable yet)
        _GAUGES.add(self)

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> SQLiteStore:
        return cls(settings.sqlite_path, busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                   retention=Retention(readings_days=settings.readings_ttl_days,
                                       alerts_days=settings.alerts_retention_days,
                                       deliveries_days=settings.deliveries_retention_days,
                                       interval_s=settings.sqlite_retention_interval_s),
                   min_free_bytes=settings.sqlite_min_free_bytes)

    # ------------------------------------------------------------------ connections and transactions

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: no implicit transactions; _write() issues BEGIN IMMEDIATE itself.
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against process crashes in WAL mode; only an OS crash or power loss can lose the
            # last transactions, which the scorer replays from its Kafka checkpoint anyway.
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        if getattr(self._local, "tuned", None) is not conn:
            # Only connections that write: the scorer's batch touches one index leaf page per station (the key is
            # ordered by station), which overflowed the 2 MiB default cache at 1,000 stations, and each automatic
            # WAL checkpoint (fsync) every 1,000 pages sat inside a COMMIT. Measured on 1,000 stations x 5 readings
            # per batch: 95 -> 52 us per reading. Readers keep the default cache (the API has many threads).
            conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_WAL_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit = {WRITER_WAL_PAGES * 4096 * 2}")  # truncate after a checkpoint
            self._local.tuned = conn
        try:
            self._begin_immediate(conn)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (it does on some SQLITE_FULL failures); a COMMIT that failed
                # leaves the transaction open, and the connection could not begin another one.
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if _disk_full(exc):
                raise StoreFull(f"SQLite write failed: database or disk is full ({self.path}: "
                                f"{self._free_text()} bytes free on its filesystem)") from exc
            raise StoreError(f"SQLite write failed: {exc}") from exc

    def _begin_immediate(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried every :data:`LOCK_POLL_S` while another writer holds the lock, for up to
        ``busy_timeout_ms`` (then SQLite's "database is locked")."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                        raise
                time.sleep(LOCK_POLL_S)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")

    def _write_chunks(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        for start in range(0, len(rows), WRITE_CHUNK_ROWS):
            with self._write() as conn:
                conn.executemany(sql, rows[start:start + WRITE_CHUNK_ROWS])

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite query failed: {exc}") from exc

    # ------------------------------------------------------------------ lifecycle

    def migrate(self) -> None:
        """Apply the packaged migrations not yet recorded in ``schema_migrations``, each in its own transaction.

        Safe to run from several processes at once: BEGIN IMMEDIATE serializes them and the second one finds the
        versions already recorded.
        """
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
            )
        for version, name, script in migration_files():
            with self._write() as conn:
                if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue
                # A migration that rewrites a table (002) takes a while on a big store: say what is going on.
                log.info("store %s: applying migration %d (%s)", self.path, version, name)
                started = time.monotonic()
                for statement in split_sql(script):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?,?,?)",
                    (version, name, to_ms(datetime.now(UTC))),
                )
            log.info("store %s: migration %d done in %.1f s", self.path, version, time.monotonic() - started)

    def applied_migrations(self) -> list[int]:
        return [row[0] for row in self._query("SELECT version FROM schema_migrations ORDER BY version")]

    def ping(self) -> None:
        """Raises StoreError when the file cannot be read, StoreFull when its filesystem has less than
        ``min_free_bytes`` free (writes fail or soon will: not ready)."""
        self._query("SELECT 1")
        if self.min_free_bytes:
            usage = self.filesystem_usage()
            if usage is not None and usage[0] < self.min_free_bytes:
                raise StoreFull(f"SQLite store {self.path}: {usage[0]} bytes free on its filesystem, less than the "
                                f"{self.min_free_bytes} it needs (CITYSENSE_SQLITE_MIN_FREE_BYTES)")

    def filesystem_usage(self) -> tuple[int, int] | None:
        """(bytes available, filesystem size) where the SQLite file lives; None when that cannot be read."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize

    def _free_text(self) -> str:
        usage = self.filesystem_usage()
        return "unknown" if usage is None else str(usage[0])

    def close(self) -> None:
        self._closed = True
        with _GAUGES.lock:
            _GAUGES.stores.discard(self)
        with self._all_lock:
            connections, self._all = self._all, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.ProgrammingError:
                pass  # created in another thread: that thread's connection is released when the thread ends

    # ------------------------------------------------------------------ readings and stations

    def write_readings(self, readings: Sequence[EnrichedReading]) -> None:
        rows = [
            (
                r.station_id,
                to_ms(r.ts),
                r.seq,
                *_pack_metrics(r.metrics),
                r.lat,
                r.lon,
                _json_or_none(list(r.outliers)),
                _json_or_none(r.zscores),
                _json_or_none(list(r.faults)),
                1 if r.late else 0,
                opt_ms(r.ingested_at),
            )
            for r in readings
        ]
        if not rows:
            return
        self._write_chunks(_READING_INSERT, rows)
        self._maybe_expire()

    def write_reading_batch(self, batch: ReadingBatch) -> None:
        """Column-wise :meth:`write_readings`: same rows, built from NumPy columns (no object per reading)."""
        n = len(batch)
        if not n:
            return
        values = np.ascontiguousarray(batch.values, dtype="<f8")  # the blob format is little-endian doubles
        present = ~np.isnan(values)
        full = present.all(axis=1)
        all_names = ",".join(batch.metric_names)
        if any("," in name for name in batch.metric_names):
            raise StoreError(f"metric names must not contain a comma: {sorted(batch.metric_names)}")
        metric_names = np.array(batch.metric_names)
        names = [all_names if f else ",".join(metric_names[present[i]]) for i, f in enumerate(full)]
        blobs = [row.tobytes() if f else row[present[i]].tobytes() for i, row, f in zip(range(n), values, full,
                                                                                          strict=True)]
        lat = np.where(np.isnan(batch.lat), None, batch.lat).tolist()
        lon = np.where(np.isnan(batch.lon), None, batch.lon).tolist()
        outliers = [_json_list(o) for o in batch.outliers]
        faults = [None] * n if batch.faults is None else [_json_list(f) for f in batch.faults]
        zscores = _zscore_json(batch)
        ingested = opt_ms(batch.ingested_at)
        rows = list(zip(batch.station_id, batch.ts_ms.tolist(), batch.seq.tolist(), names, blobs, lat, lon, outliers,
                        zscores, faults, batch.late.astype(int).tolist(), [ingested] * n, strict=True))
        self._write_chunks(_READING_INSERT, rows)
        self._maybe_expire()

    def read_readings(self, station_id: str, start: datetime, end: datetime, metric: str | None = None,
                      limit: int = 100, cursor: str | None = None) -> Page[EnrichedReading]:
        """Readings of one station with ``start <= ts < end``, newest first (ties by seq ascending).

        With ``metric``, only readings that carry that metric (the readings themselves are returned whole).
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        start_ms, end_ms = to_ms(start), to_ms(end)
        fingerprint = _fingerprint("readings", station_id, start_ms, end_ms, metric)
        sql = f"SELECT {_READING_COLUMNS} FROM readings WHERE station_id = ? AND ts >= ? AND ts < ?"
        params: list[Any] = [station_id, start_ms, end_ms]
        if metric is not None:
            sql += " AND instr(',' || metric_names || ',', ?) > 0"
            params.append(f",{metric},")
        if cursor is not None:
            position = decode_cursor(cursor, ("q", "ts", "seq"))
            if position["q"] != fingerprint:
                raise InvalidCursor("cursor belongs to a different query")
            sql += " AND (ts < ? OR (ts = ? AND seq > ?))"
            params += [position["ts"], position["ts"], position["seq"]]
        sql += " ORDER BY ts DESC, seq ASC LIMIT ?"
        params.append(limit + 1)  # one extra row tells whether another page exists
        rows = self._query(sql, params)
        items = [_reading(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor({"q": fingerprint, "ts": last[1], "seq": last[2]})
        return Page(items, next_cursor)

    def upsert_stations(self, stations: Sequence[StationRecord]) -> None:
        rows = [
            (
                s.station_id,
                to_ms(s.last_seen),
                s.last_seq,
                _latest_json(s.latest),
                s.lat,
                s.lon,
                s.status,
                opt_ms(s.status_changed_at),
                to_ms(s.status_changed_at or s.last_seen),
            )
            for s in stations
        ]
        if rows:
            with self._write() as conn:
                conn.executemany(_STATION_UPSERT, rows)

    def set_station_status(self, station_id: str, status: StationState, at: datetime) -> None:
        """Set the status as of ``at``; ignored when a newer status is stored. NotFound for an unknown station."""
        at_ms = to_ms(at)
        with self._write() as conn:
            if conn.execute("SELECT 1 FROM stations WHERE station_id = ?", (station_id,)).fetchone() is None:
                raise NotFound(f"station {station_id!r}")
            conn.execute(
                "UPDATE stations SET status = ?, status_changed_at = ?, status_ts = ?"
                " WHERE station_id = ? AND status_ts <= ?",
                (status, at_ms, at_ms, station_id, at_ms),
            )

    def get_station(self, station_id: str) -> StationRecord | None:
        rows = self._query(f"SELECT {_STATION_COLUMNS} FROM stations WHERE station_id = ?", (station_id,))
        return _station(rows[0]) if rows else None

    def list_stations(self) -> list[StationRecord]:
        return [_station(row) for row in self._query(f"SELECT {_STATION_COLUMNS} FROM stations ORDER BY station_id")]

    # ------------------------------------------------------------------ alerts

    def upsert_alerts(self, alerts: Sequence[AlertRecord]) -> None:
        rows = [
            (
                a.alert_id, a.station_id, a.rule_id, a.kind, a.severity, a.state, to_ms(a.opened_at),
                to_ms(a.updated_at), a.message, a.last_event_id, a.metric, a.value, a.threshold, a.window,
                a.lat, a.lon, opt_ms(a.resolved_at),
            )
            for a in alerts
        ]
        if rows:
            with self._write() as conn:
                conn.executemany(_ALERT_UPSERT, rows)

    def get_alert(self, alert_id: str) -> AlertRecord | None:
        rows = self._query(f"SELECT {_ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
        return _alert(rows[0]) if rows else None

    def list_alerts(self, query: AlertQuery) -> Page[AlertRecord]:
        """Alerts matching every given filter, newest ``opened_at`` first (ties by alert_id ascending)."""
        if query.limit < 1:
            raise ValueError("limit must be at least 1")
        fingerprint = _fingerprint(
            "alerts", query.state, query.severity, query.kind, query.station_id, query.bbox,
            opt_ms(query.since),
        )
        clauses: list[str] = []
        params: list[Any] = []
        if query.state != "all":
            clauses.append("state = ?")
            params.append(query.state)
        for column, value in (("severity", query.severity), ("kind", query.kind), ("station_id", query.station_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if query.since is not None:
            clauses.append("opened_at >= ?")
            params.append(to_ms(query.since))
        if query.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = query.bbox
            clauses.append("lat BETWEEN ? AND ?")
            params += [min_lat, max_lat]
            if min_lon <= max_lon:
                clauses.append("lon BETWEEN ? AND ?")
                params += [min_lon, max_lon]
            else:  # the box crosses the antimeridian
                clauses.append("(lon >= ? OR lon <= ?)")
                params += [min_lon, max_lon]
        if query.cursor is not None:
            position = decode_cursor(query.cursor, ("q", "at", "id"))
            if position["q"] != fingerprint:
                raise InvalidCursor("cursor belongs to a different query")
            clauses.append("(opened_at < ? OR (opened_at = ? AND alert_id > ?))")
            params += [position["at"], position["at"], position["id"]]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(
            f"SELECT {_ALERT_COLUMNS} FROM alerts{where} ORDER BY opened_at DESC, alert_id ASC LIMIT ?",
            [*params, query.limit + 1],
        )
        items = [_alert(row) for row in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = rows[query.limit - 1]
            next_cursor = encode_cursor({"q": fingerprint, "at": last[6], "id": last[0]})
        return Page(items, next_cursor)

    # ------------------------------------------------------------------ subscriptions and deliveries

    def create_subscription(self, subscription: Subscription) -> None:
        """Insert if absent: creating the same id again changes nothing (idempotent retries)."""
        now = datetime.now(UTC)
        created = subscription.created_at or now
        with self._write() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO subscriptions ({_SUBSCRIPTION_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                (
                    subscription.id, subscription.url, subscription.secret, subscription.description,
                    _dumps(subscription.filters), subscription.status, to_ms(created),
                    to_ms(subscription.updated_at or created),
                ),
            )

    def get_subscription(self, subscription_id: str) -> Subscription | None:
        rows = self._query(f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?", (subscription_id,))
        return _subscription(rows[0]) if rows else None

    def list_subscriptions(self, status: SubscriptionStatus | None = None) -> list[Subscription]:
        sql = f"SELECT {_SUBSCRIPTION_COLUMNS} FROM subscriptions"
        params: tuple[Any, ...] = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        return [_subscription(row) for row in self._query(sql + " ORDER BY created_at, id", params)]

    def update_subscription(self, subscription: Subscription) -> None:
        """Replace url, secret, description, filters and status; created_at stays. NotFound if missing."""
        updated = subscription.updated_at or datetime.now(UTC)
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE subscriptions SET url = ?, secret = ?, description = ?, filters = ?, status = ?,"
                " updated_at = ? WHERE id = ?",
                (
                    subscription.url, subscription.secret, subscription.description, _dumps(subscription.filters),
                    subscription.status, to_ms(updated), subscription.id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"subscription {subscription.id!r}")

    def delete_subscription(self, subscription_id: str) -> bool:
        """True if it existed. Its deliveries stay (they are the audit trail of what was sent)."""
        with self._write() as conn:
            return conn.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0

    def record_delivery(self, delivery: Delivery) -> None:
        d = delivery
        with self._write() as conn:
            conn.execute(
                _DELIVERY_UPSERT,
                (
                    d.subscription_id, d.event_id, d.webhook_id, d.status, d.attempts, to_ms(d.created_at),
                    to_ms(d.updated_at), d.event_type, d.last_status_code, d.last_error, opt_ms(d.next_attempt_at),
                ),
            )

    def get_delivery(self, subscription_id: str, event_id: str) -> Delivery | None:
        rows = self._query(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE subscription_id = ? AND event_id = ?",
            (subscription_id, event_id),
        )
        return _delivery(rows[0]) if rows else None

    def list_deliveries(self, subscription_id: str, limit: int = 100,
                        cursor: str | None = None) -> Page[Delivery]:
        """Deliveries of one subscription, newest ``created_at`` first (ties by event_id ascending)."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        fingerprint = _fingerprint("deliveries", subscription_id)
        sql = f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE subscription_id = ?"
        params: list[Any] = [subscription_id]
        if cursor is not None:
            position = decode_cursor(cursor, ("q", "at", "id"))
            if position["q"] != fingerprint:
                raise InvalidCursor("cursor belongs to a different query")
            sql += " AND (created_at < ? OR (created_at = ? AND event_id > ?))"
            params += [position["at"], position["at"], position["id"]]
        rows = self._query(sql + " ORDER BY created_at DESC, event_id ASC LIMIT ?", [*params, limit + 1])
        items = [_delivery(row) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor({"q": fingerprint, "at": last[5], "id": last[1]})
        return Page(items, next_cursor)

    # ------------------------------------------------------------------ citizens' area subscriptions

    def create_area_subscription(self, subscription: AreaSubscription) -> None:
        """Insert if absent: creating the same id again changes nothing (idempotent retries)."""
        a = subscription
        with self._write() as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO area_subscriptions ({_AREA_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (a.id, a.email, a.lat, a.lon, a.radius_km, a.min_severity, a.language, a.status,
                 to_ms(a.created_at or datetime.now(UTC)), opt_ms(a.confirmed_at)),
            )

    def get_area_subscription(self, subscription_id: str) -> AreaSubscription | None:
        rows = self._query(f"SELECT {_AREA_COLUMNS} FROM area_subscriptions WHERE id = ?", (subscription_id,))
        return _area_subscription(rows[0]) if rows else None

    def list_area_subscriptions(self, status: AreaSubscriptionStatus | None = None,
                                email: str | None = None) -> list[AreaSubscription]:
        """Oldest first (ties by id); ``email`` matches exactly (callers normalise addresses before storing)."""
        clauses, params = [], []
        for column, value in (("status", status), ("email", email)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._query(f"SELECT {_AREA_COLUMNS} FROM area_subscriptions{where} ORDER BY created_at, id", params)
        return [_area_subscription(row) for row in rows]

    def update_area_subscription(self, subscription: AreaSubscription) -> None:
        """Replace every field but ``created_at``. NotFound if missing."""
        a = subscription
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE area_subscriptions SET email = ?, lat = ?, lon = ?, radius_km = ?, min_severity = ?,"
                " language = ?, status = ?, confirmed_at = ? WHERE id = ?",
                (a.email, a.lat, a.lon, a.radius_km, a.min_severity, a.language, a.status, opt_ms(a.confirmed_at),
                 a.id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"area subscription {a.id!r}")

    def delete_area_subscription(self, subscription_id: str) -> bool:
        """True if it existed. Its deliveries stay (the audit trail of what was sent)."""
        with self._write() as conn:
            return conn.execute("DELETE FROM area_subscriptions WHERE id = ?", (subscription_id,)).rowcount > 0

    # ------------------------------------------------------------------ retention

    def _maybe_expire(self) -> None:
        """Called after every readings write: a retention run when one is due (cheap when not: one clock read)."""
        if not self.retention.enabled or self._clock() < self._next_expiry:
            return
        if not self._retention_lock.acquire(blocking=False):
            return  # another thread of this process is at it
        try:
            now = self._clock()
            try:
                done = self._expire(now, self.retention.budget_s)[1]
            except StoreError as exc:
                # Deleting needs a little space too (the WAL): on a full disk this fails like any write.
                log.warning("store %s: retention run failed, next in %.0f s: %s", self.path,
                            self.retention.interval_s, exc)
                done = True
            self._next_expiry = now + self.retention.interval_s if done else now
        finally:
            self._retention_lock.release()

    def expire(self, now: float | None = None) -> dict[str, int]:
        """Delete everything the retention settings say is due, without a time budget; rows deleted per table."""
        with self._retention_lock:
            return self._expire(self._clock() if now is None else now, None)[0]

    def _expire(self, now: float, budget_s: float | None) -> tuple[dict[str, int], bool]:
        r = self.retention
        started = time.monotonic()
        now_ms = int(now * 1000)
        counts = {"readings": 0, "alerts": 0, "deliveries": 0}

        def spent() -> bool:
            return budget_s is not None and time.monotonic() - started >= budget_s

        done = True
        if r.readings_days:
            cutoff = now_ms - r.readings_days * DAY_MS
            # Rowids start again from 1 once the table was emptied: the cursor must not skip the new rows.
            last = self._query("SELECT max(rowid) FROM readings")[0][0] or 0
            if self._readings_cursor > last:
                self._readings_cursor = 0
            while True:
                deleted, finished = self._expire_readings_chunk(cutoff)
                counts["readings"] += deleted
                if finished:
                    break
                if spent():
                    done = False
                    break
        for table, days, where in (
            ("alerts", r.alerts_days, "state = 'resolved'"),
            ("deliveries", r.deliveries_days, "status IN ('delivered', 'dead')"),
        ):
            if not days or not done:
                continue
            cutoff = now_ms - days * DAY_MS
            while True:
                with self._write() as conn:
                    deleted = conn.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {where}"
                        f" AND updated_at < ? LIMIT ?)", (cutoff, r.chunk_rows)).rowcount
                counts[table] += deleted
                if deleted < r.chunk_rows:
                    break
                if spent():
                    done = False
                    break
        if any(counts.values()):
            log.info("store %s: retention deleted %d readings, %d alerts, %d deliveries in %.2f s%s", self.path,
                     counts["readings"], counts["alerts"], counts["deliveries"], time.monotonic() - started,
                     "" if done else " (continuing at the next write)")
        return counts, done

    def _expire_readings_chunk(self, cutoff_ms: int) -> tuple[int, bool]:
        """One chunk of readings in rowid (= arrival) order after the cursor: delete the expired ones. Finished when
        the chunk reaches a reading that is not expired yet (everything after it arrived later) or the table's end.
        Rows without ingested_at are never expired and skipped. (Readings migrated by 002 are in station order, not
        arrival order: among those a row can wait until the rows before it expire too.)"""
        chunk = self.retention.chunk_rows
        with self._write() as conn:
            rows = conn.execute("SELECT rowid, ingested_at FROM readings WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                (self._readings_cursor, chunk)).fetchall()
            if not rows:
                return 0, True
            fresh = next((rowid for rowid, at in rows if at is not None and at >= cutoff_ms), None)
            upto = rows[-1][0] if fresh is None else fresh - 1
            deleted = conn.execute("DELETE FROM readings WHERE rowid > ? AND rowid <= ? AND ingested_at < ?",
                                   (self._readings_cursor, upto, cutoff_ms)).rowcount
        self._readings_cursor = upto
        return deleted, fresh is not None or len(rows) < chunk

    # ------------------------------------------------------------------ daily aggregates

    def write_daily_aggregates(self, aggregates: Sequence[DailyAggregate]) -> None:
        """Upsert by (station_id, metric, day): a recomputed day replaces the earlier result."""
        rows = [
            (a.station_id, a.metric, a.day, a.mean, a.max, a.count, a.hours, 1 if a.complete else 0)
            for a in aggregates
        ]
        if rows:
            with self._write() as conn:
                conn.executemany(_AGGREGATE_UPSERT, rows)

    def read_daily_aggregates(self, station_id: str, metric: str | None = None, start_day: str | None = None,
                              end_day: str | None = None) -> list[DailyAggregate]:
        """Aggregates with ``start_day <= day <= end_day`` (both inclusive), ordered by metric then day."""
        sql = "SELECT station_id, metric, day, mean, max, count, hours, complete FROM daily_aggregates"
        sql += " WHERE station_id = ?"
        params: list[Any] = [station_id]
        for clause, value in (("metric = ?", metric), ("day >= ?", start_day), ("day <= ?", end_day)):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        rows = self._query(sql + " ORDER BY metric, day", params)
        return [DailyAggregate(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7])) for r in rows]


# ---------------------------------------------------------------------- row -> record


def _reading(row: tuple[Any, ...]) -> EnrichedReading:
    return EnrichedReading(
        station_id=row[0],
        ts=from_ms(row[1]),
        seq=row[2],
        metrics=_unpack_metrics(row[3], row[4]),
        lat=row[5],
        lon=row[6],
        outliers=tuple(json.loads(row[7])) if row[7] else (),
        zscores=json.loads(row[8]) if row[8] else {},
        faults=tuple(json.loads(row[9])) if row[9] else (),
        late=bool(row[10]),
        ingested_at=opt_from_ms(row[11]),
    )


def _station(row: tuple[Any, ...]) -> StationRecord:
    return StationRecord(
        station_id=row[0], last_seen=from_ms(row[1]), last_seq=row[2], latest=json.loads(row[3]), lat=row[4],
        lon=row[5], status=row[6], status_changed_at=opt_from_ms(row[7]),
    )


def _alert(row: tuple[Any, ...]) -> AlertRecord:
    return AlertRecord(
        alert_id=row[0], station_id=row[1], rule_id=row[2], kind=row[3], severity=row[4], state=row[5],
        opened_at=from_ms(row[6]), updated_at=from_ms(row[7]), message=row[8], last_event_id=row[9],
        metric=row[10], value=row[11], threshold=row[12], window=row[13], lat=row[14], lon=row[15],
        resolved_at=opt_from_ms(row[16]),
    )


def _subscription(row: tuple[Any, ...]) -> Subscription:
    return Subscription(
        id=row[0], url=row[1], secret=row[2], description=row[3], filters=json.loads(row[4]), status=row[5],
        created_at=from_ms(row[6]), updated_at=from_ms(row[7]),
    )


def _area_subscription(row: tuple[Any, ...]) -> AreaSubscription:
    return AreaSubscription(
        id=row[0], email=row[1], lat=row[2], lon=row[3], radius_km=row[4], min_severity=row[5], language=row[6],
        status=row[7], created_at=from_ms(row[8]), confirmed_at=opt_from_ms(row[9]),
    )


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(
        subscription_id=row[0], event_id=row[1], webhook_id=row[2], status=row[3], attempts=row[4],
        created_at=from_ms(row[5]), updated_at=from_ms(row[6]), event_type=row[7], last_status_code=row[8],
        last_error=row[9], next_attempt_at=opt_from_ms(row[10]),
    )
