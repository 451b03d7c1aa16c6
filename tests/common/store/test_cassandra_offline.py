"""CassandraStore without a server: CQL syntax (cqlsh's grammar) and the store's own logic over a fake session.

The fake stands in for the driver boundary only (Session.prepare/execute/set_keyspace and the concurrent
executors); nothing here proves the CQL behaves as intended on a real cluster. The contract suite does that when
CITYSENSE_CASSANDRA_HOSTS is set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from citysense_common.store import AlertQuery, AlertRecord, EnrichedReading, InvalidCursor, NotFound, StoreError
from citysense_common.store import cassandra as cs
from citysense_common.store.settings import StoreSettings
from cqlshlib import cql3handling

# ---------------------------------------------------------------------- CQL syntax with cqlsh's grammar


def _grammar() -> Any:
    """cqlsh's CQL grammar, with <userType> removed from <storageType>.

    Every plain type name also matches <userType>, and cqlshlib's backtracking parser explores both readings of
    each column: a 17-column CREATE TABLE takes minutes. Our schema uses no user-defined types, so dropping that
    alternative changes no verdict here; a future UDT column would fail this test loudly, not pass silently.
    """
    rules = cql3handling.Cql3ParsingRuleSet()
    rules.append_rules(cql3handling.syntax_rules)
    rules.append_rules(
        "<storageType> ::= ( <simpleStorageType> | <collectionType> | <frozenCollectionType> | <vectorType> )"
        " ( <column_mask> )? ;"
    )
    return rules


GRAMMAR = _grammar()


def cql_errors(text: str) -> list[str]:
    """Statements of ``text`` that cqlsh's grammar rejects (empty = all parse)."""
    statements, _ = GRAMMAR.cql_split_statements(text)
    bad = []
    for tokens in statements:
        if not tokens:
            continue
        error_tokens = [t for t in tokens if t[0] in ("unclosedString", "unclosedName", "unclosedComment")]
        parsed = GRAMMAR.cql_whole_parse_tokens(tokens, srcstr=text, startsymbol="CQL_Statement")
        if error_tokens or parsed is None:
            bad.append(GRAMMAR.cql_extract_orig(tokens, text))
    return bad


def with_literals(statement: str) -> str:
    """cqlsh's lexer has no bind markers; a literal in each `?` position keeps the syntax being checked."""
    assert "'" not in statement.replace("'readings'", "")  # no string literal holds a '?'
    return statement.replace("?", "0") + ";"


def test_the_checker_rejects_broken_cql() -> None:
    assert cql_errors("CREATE TABLE t (a text PRIMARY KEY, b frozen<map<text,>>);")
    assert cql_errors("SELECT a FORM t;")
    assert cql_errors("SELECT 'unclosed FROM t;")
    assert cql_errors("INSERT INTO t (a, b) VALUES (0, 0) USING TIMESTAMP;")
    assert cql_errors("CREATE TABLE t (a text, b int, PRIMARY KEY ((a), b));")  # cqlsh has no ((single))
    assert not cql_errors("CREATE TABLE t (a text, b int, PRIMARY KEY (a, b)) WITH CLUSTERING ORDER BY (b DESC);")


@pytest.mark.parametrize("migration", cs.migration_files(), ids=lambda m: f"{m[0]:03}_{m[1]}")
def test_migration_files_parse(migration: tuple[int, str, str]) -> None:
    _, _, script = migration
    assert cql_errors(script) == []
    ours = cs.split_cql(script)
    theirs = [t for t in GRAMMAR.cql_split_statements(script)[0] if t]
    assert len(ours) == len(theirs) > 0  # the runtime splitter agrees with cqlsh's
    for statement in ours:
        assert cql_errors(statement + ";") == []
        assert re.match(r"CREATE TABLE IF NOT EXISTS ", statement), "migrations must be re-runnable"


def test_migration_versions_are_numbered_files() -> None:
    versions = [v for v, _, _ in cs.migration_files()]
    assert versions == sorted(set(versions)) and versions[0] == 1


@pytest.mark.parametrize("name", sorted(cs.prepared_statements()))
def test_prepared_statements_parse(name: str) -> None:
    statement = cs.prepared_statements()[name]
    assert cql_errors(with_literals(statement)) == []


def test_generated_ddl_parses() -> None:
    simple = cs.CassandraStore(StoreSettings(), FakeSession(), **fake_executors())
    nts = cs.CassandraStore(
        StoreSettings(cassandra_replication_strategy="NetworkTopologyStrategy",
                      cassandra_replication_dcs={"dc1": 3, "dc2": 2}, readings_ttl_days=7),
        FakeSession(), **fake_executors())
    statements = [simple.keyspace_cql(), nts.keyspace_cql(), simple.ttl_cql(), nts.ttl_cql(),
                  *(f"TRUNCATE {table}" for table in cs.TABLES)]
    for statement in statements:
        assert cql_errors(statement + ";") == [], statement
    assert "'dc1': 3" in nts.keyspace_cql() and "'replication_factor': 1" in simple.keyspace_cql()
    assert nts.ttl_cql().endswith("= 604800")


# ---------------------------------------------------------------------- a fake driver session


@dataclass
class Bound:
    cql: str
    params: tuple[Any, ...]
    fetch_size: int | None = None


@dataclass
class Prepared:
    cql: str

    def bind(self, params: Any) -> Bound:
        return Bound(self.cql, tuple(params))


@dataclass
class Result:
    rows: list[Any]
    paging_state: bytes | None = None
    was_applied: bool = True

    @property
    def current_rows(self) -> list[Any]:
        return self.rows

    def __iter__(self) -> Any:
        return iter(self.rows)


@dataclass
class FakeSession:
    """Answers each CQL text with a handler(params) -> all rows; pages them like the driver would."""

    handlers: dict[str, Callable[[tuple[Any, ...]], Any]] = field(default_factory=dict)
    keyspace: str | None = None
    executed: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    prepared: list[str] = field(default_factory=list)

    def set_keyspace(self, keyspace: str) -> None:
        self.keyspace = keyspace

    def prepare(self, cql: str) -> Prepared:
        self.prepared.append(cql)
        return Prepared(cql)

    def execute(self, statement: Any, params: Any = (), paging_state: bytes | None = None, **_: Any) -> Result:
        if isinstance(statement, Bound):
            cql, params, fetch_size = statement.cql, statement.params, statement.fetch_size
        else:
            cql, fetch_size = statement.cql if isinstance(statement, Prepared) else statement, None
        params = tuple(params or ())
        self.executed.append((cql, params))
        answer = self.handlers.get(cql, lambda _p: [])(params)
        if isinstance(answer, Result):
            return answer
        offset = int(paging_state.decode()) if paging_state else 0
        if fetch_size is None:
            return Result(list(answer)[offset:])
        page = list(answer)[offset:offset + fetch_size]
        more = offset + fetch_size < len(answer)
        return Result(page, str(offset + fetch_size).encode() if more else None)


def fake_executors(log: list[Any] | None = None) -> dict[str, Callable[..., Any]]:
    calls = log if log is not None else []

    def concurrent(session: FakeSession, pairs: Any, concurrency: int, raise_on_first_error: bool) -> list[Any]:
        pairs = list(pairs)
        calls.append(("pairs", [(p.cql, tuple(params)) for p, params in pairs], concurrency))
        return [session.execute(p, params) for p, params in pairs]

    def with_args(session: FakeSession, prepared: Prepared, rows: Any, concurrency: int,
                  raise_on_first_error: bool) -> list[Any]:
        rows = list(rows)
        calls.append(("args", prepared.cql, rows, concurrency))
        return [session.execute(prepared, r) for r in rows]

    return {"execute_concurrent": concurrent, "execute_concurrent_with_args": with_args}


def make_store(session: FakeSession | None = None, log: list[Any] | None = None, **settings: Any) -> cs.CassandraStore:
    return cs.CassandraStore(StoreSettings(**settings), session or FakeSession(), **fake_executors(log))


# ---------------------------------------------------------------------- pure logic


def test_reading_days() -> None:
    d = datetime(2024, 3, 10, tzinfo=UTC)
    assert cs.reading_days(d, d + timedelta(hours=5)) == [date(2024, 3, 10)]
    assert cs.reading_days(d, d + timedelta(days=1)) == [date(2024, 3, 10)]  # end is exclusive: midnight not read
    assert cs.reading_days(d, d + timedelta(days=1, milliseconds=1)) == [date(2024, 3, 11), date(2024, 3, 10)]
    assert cs.reading_days(d - timedelta(milliseconds=1), d) == [date(2024, 3, 9)]
    assert cs.reading_days(d, d) == [] and cs.reading_days(d, d - timedelta(days=1)) == []
    # Days are UTC days, whatever the caller's time zone.
    vienna = timezone(timedelta(hours=1))
    assert cs.reading_days(datetime(2024, 3, 10, 0, 30, tzinfo=vienna), datetime(2024, 3, 10, 0, 45, tzinfo=vienna)) \
        == [date(2024, 3, 9)]


def test_alert_write_timestamp_orders_events() -> None:
    base = AlertRecord("a", "st", "r", "threshold", "critical", "active", datetime(2024, 1, 1, tzinfo=UTC),
                       datetime(2024, 1, 1, 0, 1, tzinfo=UTC), "m", "e1")
    newer = AlertRecord(**{**base.__dict__, "updated_at": datetime(2024, 1, 1, 0, 1, 0, 1000, tzinfo=UTC)})
    resolved = AlertRecord(**{**base.__dict__, "state": "resolved"})
    assert cs.alert_write_timestamp(base) < cs.alert_write_timestamp(resolved) < cs.alert_write_timestamp(newer)
    assert cs.alert_write_timestamp(base) == 1704067260000 * 1000  # microseconds, as CQL timestamps are


def test_paging_state_encoding() -> None:
    state = bytes(range(256))
    assert cs.decode_paging_state(cs.encode_paging_state(state)) == state
    assert cs.encode_paging_state(None) is None and cs.decode_paging_state(None) is None
    with pytest.raises(InvalidCursor):
        cs.decode_paging_state("a")


def test_split_cql() -> None:
    script = "-- header;\nCREATE TABLE a (x int PRIMARY KEY);\n\n-- note\nCREATE TABLE b (\n  y int PRIMARY KEY\n);\n"
    assert cs.split_cql(script) == ["CREATE TABLE a (x int PRIMARY KEY)", "CREATE TABLE b (\n  y int PRIMARY KEY\n)"]
    with pytest.raises(StoreError):
        cs.split_cql("CREATE TABLE c (x int PRIMARY KEY)")


def test_execution_profile_follows_settings() -> None:
    from cassandra import ConsistencyLevel

    profile = make_store(cassandra_consistency="ONE", cassandra_local_dc="dc-west").execution_profile()
    assert profile.consistency_level == ConsistencyLevel.ONE
    assert profile.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
    assert profile.load_balancing_policy._child_policy.local_dc == "dc-west"
    assert make_store().execution_profile().consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_no_hosts_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="CITYSENSE_CASSANDRA_HOSTS"):
        cs.CassandraStore(StoreSettings(store="cassandra", cassandra_hosts=[]))


def test_driver_errors_become_store_errors() -> None:
    from cassandra import OperationTimedOut

    def boom(_params: Any) -> Any:
        raise OperationTimedOut("too slow")

    store = make_store(FakeSession({cs.STATION_SELECT: boom}))
    with pytest.raises(StoreError, match="too slow"):
        store.get_station("st")


# ---------------------------------------------------------------------- statements the store issues


def test_migrate_applies_files_once_and_sets_ttl() -> None:
    session = FakeSession()
    applied: list[tuple[int]] = []
    ttl = [(2592000,)]
    session.handlers[cs.MIGRATIONS_SELECT] = lambda _p: list(applied)
    session.handlers[cs.TABLE_TTL_SELECT] = lambda _p: list(ttl)
    store = make_store(session, cassandra_keyspace="ks1", readings_ttl_days=30)
    store.migrate()
    texts = [cql for cql, _ in session.executed]
    assert texts[0] == store.keyspace_cql() and session.keyspace == "ks1"
    file_statements = [s for _, _, script in cs.migration_files() for s in cs.split_cql(script)]
    assert [t for t in texts if t in file_statements] == file_statements
    inserts = [params for cql, params in session.executed if cql == cs.MIGRATION_INSERT]
    assert [p[0] for p in inserts] == [v for v, _, _ in cs.migration_files()]
    assert store.ttl_cql() not in texts  # TTL already right: no schema change

    applied[:] = [(p[0],) for p in inserts]
    ttl[:] = [(86400,)]
    session.executed.clear()
    store.migrate()
    texts = [cql for cql, _ in session.executed]
    assert not [t for t in texts if t in file_statements] and cs.MIGRATION_INSERT not in texts
    assert store.ttl_cql() in texts


def test_write_readings_partitions_by_utc_day_concurrently() -> None:
    log: list[Any] = []
    store = make_store(log=log, cassandra_write_concurrency=17)
    late_evening_in_ny = datetime(2024, 1, 1, 23, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-5)))
    store.write_readings([
        EnrichedReading("st", late_evening_in_ny, 3, {"pm2_5": 1.0}, outliers=("pm2_5",)),
        EnrichedReading("st", datetime(2024, 1, 2, 3, tzinfo=UTC), 4, {}),
    ])
    [(kind, cql, rows, concurrency)] = log
    assert (kind, cql, concurrency) == ("args", cs.READING_INSERT, 17)
    assert rows[0][:4] == ("st", date(2024, 1, 2), datetime(2024, 1, 2, 4, 30, 0, 123000, tzinfo=UTC), 3)
    assert rows[0][7:10] == (["pm2_5"], None, None)  # empty collections written as null (no tombstones)
    assert rows[1][1] == date(2024, 1, 2)
    store.write_readings([])
    assert len(log) == 1


def _reading_row(ts: datetime, seq: int, metrics: dict[str, float]) -> tuple[Any, ...]:
    return ("st", ts.replace(tzinfo=None), seq, metrics, None, None, None, None, None, False, None)


def test_read_readings_pages_across_day_partitions() -> None:
    t0 = datetime(2024, 5, 1, 22, tzinfo=UTC)
    stored = [(t0 + timedelta(hours=h, minutes=m), m, {"pm2_5": 1.0} if m % 2 else {"noise_level": 2.0})
              for h in range(0, 30, 3) for m in range(4)]

    def readings(params: tuple[Any, ...]) -> list[Any]:
        station, day, start, end = params
        rows = [(ts, seq, metrics) for ts, seq, metrics in stored
                if station == "st" and ts.date() == day and start <= ts < end]
        rows.sort(key=lambda r: (-r[0].timestamp(), r[1]))
        return [_reading_row(*r) for r in rows]

    session = FakeSession({cs.READINGS_SELECT: readings})
    store = make_store(session)
    start, end = t0, t0 + timedelta(days=2)
    expected = sorted(((ts, seq) for ts, seq, _ in stored), key=lambda r: (-r[0].timestamp(), r[1]))
    for limit in (1, 3, 7, 40, 41):
        got, cursor, pages = [], None, 0
        while True:
            page = store.read_readings("st", start, end, limit=limit, cursor=cursor)
            assert len(page.items) <= limit
            got += [(r.ts, r.seq) for r in page.items]
            cursor, pages = page.next_cursor, pages + 1
            if cursor is None:
                break
        assert got == expected, limit
    days = [params[1] for cql, params in session.executed if cql == cs.READINGS_SELECT]
    assert sorted(set(days), reverse=True) == [date(2024, 5, 3), date(2024, 5, 2), date(2024, 5, 1)]

    only_pm = store.read_readings("st", start, end, metric="pm2_5", limit=100)
    assert [(r.ts, r.seq) for r in only_pm.items] == [e for e in expected if e[1] % 2]
    first = store.read_readings("st", start, end, limit=5)
    assert first.next_cursor is not None
    with pytest.raises(InvalidCursor):
        store.read_readings("st", start, end + timedelta(days=1), limit=5, cursor=first.next_cursor)


def test_alert_upsert_writes_three_tables_with_one_timestamp() -> None:
    log: list[Any] = []
    store = make_store(log=log)
    alert = AlertRecord("a1", "st", "r", "threshold", "critical", "resolved", datetime(2024, 2, 29, 23, 59, tzinfo=UTC),
                        datetime(2024, 3, 1, 0, 5, tzinfo=UTC), "m", "e3", resolved_at=datetime(2024, 3, 1, tzinfo=UTC))
    store.upsert_alerts([alert])
    [(_, pairs, _)] = log
    assert [cql for cql, _ in pairs] == [cs.ALERT_INSERT_BY_ID, cs.ALERT_INSERT_BY_STATION, cs.ALERT_INSERT_BY_DAY]
    assert {params[-1] for _, params in pairs} == {cs.alert_write_timestamp(alert)}
    assert pairs[2][1][0] == date(2024, 2, 29)  # the day of opened_at, never of updated_at: rows never move


def test_list_alerts_statement_selection() -> None:
    store = make_store(alerts_lookback_days=5)
    by_station = store.alert_partitions(AlertQuery(station_id="st-1", since=datetime(2024, 1, 1, tzinfo=UTC)))
    assert by_station == [(cs.ALERTS_SELECT_STATION, ("st-1", datetime(2024, 1, 1, tzinfo=UTC)))]
    since = datetime(2024, 1, 8, 12, tzinfo=UTC)
    by_day = store.alert_partitions(AlertQuery(since=since), newest=date(2024, 1, 10))
    assert by_day == [(cs.ALERTS_SELECT_DAY, (date(2024, 1, d), since)) for d in (10, 9, 8)]
    lookback = store.alert_partitions(AlertQuery(), newest=date(2024, 1, 10))
    assert [p[1][0] for p in lookback] == [date(2024, 1, d) for d in range(10, 4, -1)]
    today = datetime.now(UTC).date()
    assert store.alert_partitions(AlertQuery())[0][1][0] == today + timedelta(days=1)


def test_list_alerts_filters_client_side_and_pins_days_in_cursor() -> None:
    now = datetime.now(UTC)

    def row(alert_id: str, state: str, severity: str, lon: float) -> tuple[Any, ...]:
        return (alert_id, "st", "r", "threshold", severity, state, now.replace(tzinfo=None),
                now.replace(tzinfo=None), "m", "e", None, None, None, None, 48.0, lon, None)

    today_rows = [row("a1", "active", "critical", 16.0), row("a2", "resolved", "critical", 16.0),
                  row("a3", "active", "info", 16.0), row("a4", "active", "critical", 100.0),
                  row("a5", "active", "critical", 16.5)]
    session = FakeSession({cs.ALERTS_SELECT_DAY: lambda p: today_rows if p[0] == now.date() else []})
    store = make_store(session)
    query = dict(severity="critical", bbox=(15.0, 47.0, 17.0, 49.0), limit=1)
    page = store.list_alerts(AlertQuery(**query))
    ids = [a.alert_id for a in page.items]
    while page.next_cursor:
        page = store.list_alerts(AlertQuery(**query, cursor=page.next_cursor))
        ids += [a.alert_id for a in page.items]
    assert ids == ["a1", "a5"]


def test_subscription_lwt_results() -> None:
    session = FakeSession({cs.SUBSCRIPTION_UPDATE: lambda _p: Result([], was_applied=False),
                           cs.SUBSCRIPTION_DELETE: lambda _p: Result([], was_applied=False)})
    store = make_store(session)
    from citysense_common.store import Subscription

    with pytest.raises(NotFound):
        store.update_subscription(Subscription("s1", "https://x", "whsec_x"))  # noqa: S106
    assert store.delete_subscription("s1") is False
    session.handlers[cs.SUBSCRIPTION_DELETE] = lambda _p: Result([], was_applied=True)
    assert store.delete_subscription("s1") is True


def test_set_station_status_unknown_station() -> None:
    store = make_store()
    with pytest.raises(NotFound):
        store.set_station_status("ghost", "offline", datetime(2024, 1, 1, tzinfo=UTC))
    assert all(cql != cs.STATION_UPDATE_STATUS for cql, _ in store._session.executed)
