"""CassandraStore logic that needs no server: CQL text (cqlsh's grammar), pure helpers, settings -> driver options.

Everything that talks to Cassandra is tested on a real node: the store contract (test_store_contract.py) and
test_cassandra_server.py. The one exception here is the driver-error mapping for a timeout, which a healthy node
cannot be made to produce on demand.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from citysense_common.store import AlertQuery, AlertRecord, InvalidCursor, StoreError
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


def test_generated_ddl_parses() -> None:
    simple = offline_store()
    nts = offline_store(cassandra_replication_strategy="NetworkTopologyStrategy",
                        cassandra_replication_dcs={"dc1": 3, "dc2": 2}, readings_ttl_days=7)
    statements = [simple.keyspace_cql(), nts.keyspace_cql(), simple.ttl_cql(), nts.ttl_cql(),
                  *(f"TRUNCATE {table}" for table in cs.TABLES)]
    for statement in statements:
        assert cql_errors(statement + ";") == [], statement
    assert "'dc1': 3" in nts.keyspace_cql() and "'replication_factor': 1" in simple.keyspace_cql()
    assert nts.ttl_cql().endswith("= 604800")


# ---------------------------------------------------------------------- a store without a server


class Unreachable:
    """A session for code paths that must not touch the driver; a call raises what ``error`` says."""

    keyspace = None

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or AssertionError("this test must not reach the driver")

    def set_keyspace(self, keyspace: str) -> None:
        self.keyspace = keyspace

    def prepare(self, cql: str) -> str:
        return cql

    def execute(self, *_args: Any, **_kwargs: Any) -> Any:
        raise self.error


def offline_store(session: Unreachable | None = None, **settings: Any) -> cs.CassandraStore:
    return cs.CassandraStore(StoreSettings(**settings), session or Unreachable())


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

    profile = offline_store(cassandra_consistency="ONE", cassandra_local_dc="dc-west").execution_profile()
    assert profile.consistency_level == ConsistencyLevel.ONE
    assert profile.serial_consistency_level == ConsistencyLevel.LOCAL_SERIAL
    assert profile.load_balancing_policy._child_policy.local_dc == "dc-west"
    assert offline_store().execution_profile().consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_no_hosts_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="CITYSENSE_CASSANDRA_HOSTS"):
        cs.CassandraStore(StoreSettings(store="cassandra", cassandra_hosts=[]))


def test_driver_errors_become_store_errors() -> None:
    from cassandra import OperationTimedOut

    store = offline_store(Unreachable(OperationTimedOut("too slow")))
    with pytest.raises(StoreError, match="too slow"):
        store.get_station("st")


# ---------------------------------------------------------------------- query plans


def test_list_alerts_statement_selection() -> None:
    store = offline_store(alerts_lookback_days=5)
    by_station = store.alert_partitions(AlertQuery(station_id="st-1", since=datetime(2024, 1, 1, tzinfo=UTC)))
    assert by_station == [(cs.ALERTS_SELECT_STATION, ("st-1", datetime(2024, 1, 1, tzinfo=UTC)))]
    since = datetime(2024, 1, 8, 12, tzinfo=UTC)
    by_day = store.alert_partitions(AlertQuery(since=since), newest=date(2024, 1, 10))
    assert by_day == [(cs.ALERTS_SELECT_DAY, (date(2024, 1, d), since)) for d in (10, 9, 8)]
    lookback = store.alert_partitions(AlertQuery(), newest=date(2024, 1, 10))
    assert [p[1][0] for p in lookback] == [date(2024, 1, d) for d in range(10, 4, -1)]
    today = datetime.now(UTC).date()
    assert store.alert_partitions(AlertQuery())[0][1][0] == today + timedelta(days=1)
