"""The local Cassandra node: answers CQL, keeps its data across restarts (clean or SIGKILL), fails clearly."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import RoundRobinPolicy
from citysense_localstack.servers.cassandra import CassandraError, CassandraNode, start_cassandra

pytestmark = pytest.mark.slow


def cql(node: CassandraNode) -> Cluster:
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    return Cluster([node.contact_points], port=node.port, execution_profiles={EXEC_PROFILE_DEFAULT: profile})


def write(node: CassandraNode, rows: range) -> None:
    cluster = cql(node)
    try:
        session = cluster.connect()
        session.execute("CREATE KEYSPACE IF NOT EXISTS t WITH replication = "
                        "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.execute("CREATE TABLE IF NOT EXISTS t.kv (k int PRIMARY KEY, v text)")
        insert = session.prepare("INSERT INTO t.kv (k, v) VALUES (?, ?)")
        for k in rows:
            session.execute(insert, (k, f"v{k}"))
    finally:
        cluster.shutdown()


def read(node: CassandraNode) -> dict[int, str]:
    cluster = cql(node)
    try:
        return dict(cluster.connect().execute("SELECT k, v FROM t.kv"))
    finally:
        cluster.shutdown()


def test_node_answers_cql_and_keeps_data_across_restarts(tmp_path: Path) -> None:
    notes: list[str] = []
    node = start_cassandra(tmp_path / "node", log_path=tmp_path / "c1.log", progress=notes.append)
    try:
        assert node.host == "127.0.0.1" and node.env == {"CITYSENSE_CASSANDRA_HOSTS": "127.0.0.1",
                                                          "CITYSENSE_CASSANDRA_PORT": str(node.port)}
        assert any("ready on 127.0.0.1" in n for n in notes)
        write(node, range(100))
        assert read(node) == {k: f"v{k}" for k in range(100)}
    finally:
        assert node.stop() in (0, 143)  # 143: the JVM exits on SIGTERM after Cassandra's shutdown hook
    assert node.proc.poll() is not None

    # Same folder, new ports: the data is still there, and a SIGKILL loses nothing acknowledged (commit log).
    node = start_cassandra(tmp_path / "node", log_path=tmp_path / "c2.log", progress=notes.append)
    try:
        assert read(node) == {k: f"v{k}" for k in range(100)}
        write(node, range(100, 150))
    finally:
        node.kill()
    node = start_cassandra(tmp_path / "node", log_path=tmp_path / "c3.log", progress=notes.append)
    try:
        assert read(node) == {k: f"v{k}" for k in range(150)}
    finally:
        node.stop()
    kept = {p.name for p in (tmp_path / "node").iterdir()}
    assert {"data", "commitlog", "saved_caches", "hints", "cdc_raw"} <= kept


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        started = time.monotonic()
        with pytest.raises(CassandraError, match=f"port {taken.getsockname()[1]} .* already in use"):
            start_cassandra(tmp_path / "node", port=taken.getsockname()[1])
        assert time.monotonic() - started < 5
    assert not (tmp_path / "node" / "cassandra.log").exists()  # no JVM was started


def test_a_node_that_dies_while_starting_names_its_log_and_error(tmp_path: Path) -> None:
    # Bound but not listening: the port looks free from outside, then Cassandra cannot bind it and exits.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        log = tmp_path / "dies.log"
        with pytest.raises(CassandraError) as failure:
            start_cassandra(tmp_path / "node", storage_port=port, log_path=log, progress=lambda _: None)
    message = str(failure.value)
    assert "exited with code" in message and str(log) in message
    assert "ERROR" in message and f"{port} is in use by another process" in message
