"""SQLite-specific behaviour: several processes and threads on one file, migrations, settings and factory."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from citysense_common.settings import SettingsError, load_settings
from citysense_common.store import (
    EnrichedReading,
    SQLiteStore,
    StationRecord,
    StoreError,
    StoreSettings,
    open_store,
)
from citysense_common.store.sqlite import (
    WRITE_CHUNK_ROWS,
    WRITER_CACHE_KIB,
    WRITER_WAL_PAGES,
    migration_files,
    split_sql,
)

WORKER = Path(__file__).with_name("_sqlite_worker.py")
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_two_writer_processes_and_a_reader_share_one_file(tmp_path: Path) -> None:
    db = str(tmp_path / "shared.db")
    batches, size = 40, 250

    def spawn(role: str, station: str, n: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(WORKER), db, role, station, str(n), str(size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    procs = [spawn("write", "writer-a", batches), spawn("write", "writer-b", batches), spawn("read", "-", 30)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out))
    seen = outputs[2]["seen"]
    # The reader never failed with "database is locked", saw only whole committed batches (a replayed half
    # batch adds nothing) and never saw the count go down.
    assert all(n % size == 0 for n in seen), seen
    assert seen == sorted(seen)

    store = SQLiteStore(db)
    for station in ("writer-a", "writer-b"):
        page = store.read_readings(station, T0, T0 + timedelta(days=1), limit=100_000)
        assert len(page.items) == batches * size
        assert len({(r.ts, r.seq) for r in page.items}) == batches * size
        got = store.get_station(station)
        assert got is not None and got.last_seen == T0 + timedelta(seconds=batches * size - 1)
    assert store.applied_migrations() == [v for v, _, _ in migration_files()]
    mode = sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "threads.db")
    store.migrate()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for batch in range(20):
                store.write_readings([
                    EnrichedReading(f"t{n}", T0 + timedelta(seconds=batch * 10 + i), i, {"x": 1.0}) for i in range(10)
                ])
                store.read_readings(f"t{(n + 1) % 8}", T0, T0 + timedelta(days=1), limit=5)
        except BaseException as exc:  # collected: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n in range(8):
        assert len(store.read_readings(f"t{n}", T0, T0 + timedelta(days=1), limit=1000).items) == 200
    store.close()
    with pytest.raises(StoreError):
        store.ping()


def test_only_writing_connections_get_the_large_cache(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "cache.db")
    store.migrate()  # migrations write on this thread's connection
    store.write_readings([EnrichedReading("w", T0, 0, {"x": 1.0})])
    writer = store._conn()
    assert writer.execute("PRAGMA cache_size").fetchone()[0] == -WRITER_CACHE_KIB
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == WRITER_WAL_PAGES
    seen: list[int] = []

    def read() -> None:
        assert len(store.read_readings("w", T0, T0 + timedelta(seconds=1)).items) == 1
        seen.append(store._conn().execute("PRAGMA cache_size").fetchone()[0])

    reader = threading.Thread(target=read)
    reader.start()
    reader.join()
    assert seen and seen[0] != -WRITER_CACHE_KIB  # readers (the API's many threads) keep SQLite's default
    store.close()


def _hold_write_lock(path: Path, seconds: float, taken: threading.Event, released: threading.Event) -> None:
    """Another writer (the scorer committing a batch): holds the database's write lock for ``seconds``."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    taken.set()
    threading.Event().wait(seconds)
    released.set()
    conn.execute("COMMIT")
    conn.close()


def test_a_write_queues_for_the_lock_and_reads_keep_their_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "queue.db")
    store.migrate()
    taken, released = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(store.path, 0.5, taken, released))
    holder.start()
    assert taken.wait(10)
    store.write_readings([EnrichedReading("q", T0, 0, {"x": 1.0})])
    assert released.is_set()  # it waited for the other writer instead of failing
    holder.join()
    assert len(store.read_readings("q", T0, T0 + timedelta(seconds=1)).items) == 1
    # the wait polls with SQLite's own timeout off; afterwards the connection waits as configured again
    assert store._conn().execute("PRAGMA busy_timeout").fetchone()[0] == store.busy_timeout_ms
    store.close()


def test_a_write_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "stuck.db", busy_timeout_ms=200)
    store.migrate()
    taken, released = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(store.path, 3.0, taken, released))
    holder.start()
    assert taken.wait(10)
    with pytest.raises(StoreError, match="locked"):
        store.write_readings([EnrichedReading("s", T0, 0, {"x": 1.0})])
    assert not released.is_set()  # it gave up while the lock was still held
    holder.join()
    store.close()


def test_a_large_batch_commits_in_chunks_so_no_write_holds_the_lock_long(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "chunks.db")
    store.migrate()
    statements: list[str] = []
    store._conn().set_trace_callback(statements.append)
    n = 2 * WRITE_CHUNK_ROWS + 1
    store.write_readings([EnrichedReading("c", T0 + timedelta(seconds=i), 0, {"x": float(i)}) for i in range(n)])
    store._conn().set_trace_callback(None)
    assert statements.count("COMMIT") == 3
    page = store.read_readings("c", T0, T0 + timedelta(days=1), limit=n)
    assert len(page.items) == n
    store.close()


def test_an_invalid_batch_is_rejected_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "atomic.db")
    store.migrate()
    good = EnrichedReading("st", T0, 0, {"pm2_5": 1.0})
    bad = EnrichedReading("st", T0 + timedelta(seconds=1), 0, {"a,b": 1.0})  # a name the encoding cannot hold
    with pytest.raises(StoreError):
        store.write_readings([good, bad])
    nan = EnrichedReading("st", T0 + timedelta(seconds=2), 0, {"x": 1.0}, zscores={"x": float("nan")})
    with pytest.raises(ValueError):
        store.write_readings([good, nan])
    assert store.read_readings("st", T0, T0 + timedelta(days=1)).items == []


def test_station_latest_values_round_trip_exactly_and_a_nan_is_refused(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.migrate()
    latest = {"pm2_5": 0.1 + 0.2, "pressure": 1e16, "noise_level": -0.0, "rainfall": 5e-324, "humidity": 71.0}
    record = StationRecord(station_id="st-1", last_seen=T0, last_seq=1, latest=latest, lat=None, lon=None)
    store.upsert_stations([record])
    assert store.get_station("st-1") == record
    stored = json.loads(sqlite3.connect(tmp_path / "s.db").execute("SELECT latest FROM stations").fetchone()[0])
    assert stored == latest
    for bad in (float("nan"), float("inf")):
        later = StationRecord(station_id="st-1", last_seen=T0 + timedelta(seconds=1), last_seq=2,
                              latest={"pm2_5": bad})
        with pytest.raises(ValueError, match="finite"):
            store.upsert_stations([later])
        assert store.get_station("st-1") == record  # nothing written


def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    store.migrate()
    store.migrate()
    versions = [v for v, _, _ in migration_files()]
    assert versions and versions == sorted(set(versions))
    assert store.applied_migrations() == versions
    rows = sqlite3.connect(tmp_path / "m.db").execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert rows[0] == len(versions)


def test_migration_2_keeps_the_readings_and_their_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A store created before migration 2 (readings clustered WITHOUT ROWID) upgrades in place."""
    path = tmp_path / "old.db"
    version, name, first = migration_files()[0]
    assert version == 1
    conn = sqlite3.connect(path)
    conn.executescript(first)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                 "applied_at INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_migrations VALUES (1, ?, 0)", (name,))
    conn.commit()
    conn.close()
    old = [EnrichedReading("a", T0 + timedelta(seconds=i), i, {"pm2_5": float(i)}, lat=1.0, lon=2.0,
                           outliers=("pm2_5",) if i == 2 else (), zscores={"pm2_5": 0.5}) for i in range(5)]
    store = SQLiteStore(path)
    store.write_readings(old)  # written into the old layout

    with caplog.at_level("INFO", logger="citysense_common.store.sqlite"):
        store.migrate()
    assert "applying migration 2 (readings_rowid)" in caplog.text  # a long rewrite says what it is doing
    assert "applying migration 1" not in caplog.text  # applied ones are skipped silently
    assert store.applied_migrations() == [v for v, _, _ in migration_files()]
    layout = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE name = 'readings'").fetchone()[0]
    assert "WITHOUT ROWID" not in layout
    page = store.read_readings("a", T0, T0 + timedelta(hours=1))
    assert page.items == old[::-1]  # every row and column survived, newest first
    store.write_readings(old[:2])  # the unique index still makes a re-written reading a no-op
    assert len(store.read_readings("a", T0, T0 + timedelta(hours=1)).items) == 5


def test_the_readings_page_is_read_in_index_order(tmp_path: Path) -> None:
    """read_readings' query walks the (station_id, ts DESC, seq) index: no table scan and no sort."""
    store = SQLiteStore(tmp_path / "q.db")
    store.migrate()
    store.write_readings([EnrichedReading("a", T0, 0, {"x": 1.0})])
    sql = ("SELECT * FROM readings WHERE station_id = ? AND ts >= ? AND ts < ? AND (ts < ? OR (ts = ? AND seq > ?))"
           " ORDER BY ts DESC, seq ASC LIMIT ?")
    plan = " | ".join(row[-1] for row in sqlite3.connect(tmp_path / "q.db").execute(
        f"EXPLAIN QUERY PLAN {sql}", ("a", 0, 1, 1, 1, 0, 101)))
    assert "USING INDEX readings_by_station_time" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


def test_split_sql() -> None:
    script = "-- c;\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX i ON a (x);\n-- trailing\n"
    assert split_sql(script) == ["-- c;\nCREATE TABLE a (x TEXT DEFAULT ';');", "CREATE INDEX i ON a (x);"]
    with pytest.raises(StoreError):
        split_sql("CREATE TABLE b (x")


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("CITYSENSE_STORE", "CITYSENSE_SQLITE_PATH", "CITYSENSE_DATA_DIR", "CITYSENSE_CASSANDRA_HOSTS",
                 "CITYSENSE_CASSANDRA_KEYSPACE", "CITYSENSE_CASSANDRA_CONSISTENCY"):
        monkeypatch.delenv(name, raising=False)
    defaults = StoreSettings()
    assert (defaults.store, defaults.sqlite_path) == ("sqlite", Path(".citysense/citysense.db"))
    assert (defaults.cassandra_keyspace, defaults.cassandra_consistency, defaults.readings_ttl_days) == (
        "citysense", "LOCAL_QUORUM", 30)
    assert defaults.replication_map() == {"class": "SimpleStrategy", "replication_factor": 1}

    monkeypatch.setenv("CITYSENSE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CITYSENSE_CASSANDRA_HOSTS", "cass-0.cass, cass-1.cass,")
    monkeypatch.setenv("CITYSENSE_CASSANDRA_PASSWORD", "s3cret")
    monkeypatch.setenv("CITYSENSE_CASSANDRA_REPLICATION_STRATEGY", "NetworkTopologyStrategy")
    monkeypatch.setenv("CITYSENSE_CASSANDRA_REPLICATION_DCS", '{"dc1": 3}')
    settings = load_settings(StoreSettings)
    assert settings.sqlite_path == tmp_path / "citysense.db"
    assert settings.cassandra_hosts == ["cass-0.cass", "cass-1.cass"]
    assert settings.cassandra_password is not None and "s3cret" not in repr(settings)
    assert settings.replication_map() == {"class": "NetworkTopologyStrategy", "dc1": 3}

    monkeypatch.setenv("CITYSENSE_SQLITE_PATH", str(tmp_path / "elsewhere.db"))
    assert load_settings(StoreSettings).sqlite_path == tmp_path / "elsewhere.db"
    monkeypatch.setenv("CITYSENSE_CASSANDRA_KEYSPACE", "bad-name; DROP")
    with pytest.raises(SettingsError, match="CITYSENSE_CASSANDRA_KEYSPACE"):
        load_settings(StoreSettings)
    monkeypatch.setenv("CITYSENSE_CASSANDRA_KEYSPACE", "ok")
    monkeypatch.setenv("CITYSENSE_CASSANDRA_REPLICATION_DCS", "{}")
    with pytest.raises(SettingsError):
        load_settings(StoreSettings)


def test_open_store_builds_and_migrates_sqlite(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CITYSENSE_STORE", "sqlite")
    monkeypatch.setenv("CITYSENSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("CITYSENSE_SQLITE_PATH", raising=False)
    store = open_store()
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / "data" / "citysense.db"
        assert store.applied_migrations() == [v for v, _, _ in migration_files()]
        store.write_readings([EnrichedReading("st", T0, 0, {"pm2_5": 1.0})])
    finally:
        store.close()
    explicit = open_store(StoreSettings(sqlite_path=tmp_path / "x.db"))
    assert isinstance(explicit, SQLiteStore) and explicit.path == tmp_path / "x.db"
    explicit.close()
