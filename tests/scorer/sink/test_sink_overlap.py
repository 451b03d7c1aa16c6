"""The overlapped sink: batch N is written while Spark computes N+1, one batch in flight, in order, and a batch the
process dies with is finished from its write-ahead file on the next start."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from citysense_common.registry import Registry
from citysense_scorer.alerts.rules import load_rules
from citysense_scorer.job.stream import build_sink, foreach_batch, sink_wal_dir
from citysense_scorer.settings import scorer_settings
from citysense_scorer.sink.overlap import OverlappedSink, SinkWal
from citysense_scorer.source.decode import Decoder
from prometheus_client import REGISTRY


class Collected:
    """What ``foreachBatch`` hands over: a DataFrame whose ``toArrow`` runs the batch's Spark job (here: done)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def toArrow(self) -> pa.Table:  # noqa: N802 - Spark's name
        return self.table


def table(batch_id: int, rows: int = 3) -> pa.Table:
    return pa.table({"batch": [batch_id] * rows, "row": list(range(rows))})


SINK_PHASES = ("prepare", "engine", "alerts", "readings", "stations")


def phase_counts(*phases: str) -> dict[str, float]:
    return {p: REGISTRY.get_sample_value("citysense_scorer_sink_phase_seconds_count", {"phase": p}) or 0.0
            for p in phases}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[int, list[int]]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, t: pa.Table, batch_id: int) -> None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            assert t.column("batch").to_pylist() == [batch_id] * t.num_rows
            self.seen.append((batch_id, t.column("row").to_pylist()))
        finally:
            with self.lock:
                self.in_flight -= 1


def test_batches_reach_the_sink_in_order_one_at_a_time(tmp_path: Path) -> None:
    run = Recorder()
    sink = OverlappedSink(run, SinkWal(tmp_path / "wal"))
    before = phase_counts("handover", "wal")
    for batch_id in range(6):
        sink(Collected(table(batch_id)), batch_id)
    sink.drain()
    assert run.seen == [(b, [0, 1, 2]) for b in range(6)]
    assert run.most_in_flight == 1
    assert sink.wal.pending() == []  # every finished batch left its file
    assert phase_counts("handover", "wal") == {p: n + 6 for p, n in before.items()}  # timed for every batch


def test_the_call_returns_while_the_previous_batch_is_still_in_the_sink(tmp_path: Path) -> None:
    release, entered = threading.Event(), threading.Event()
    order: list[str] = []

    def slow(t: pa.Table, batch_id: int) -> None:
        entered.set()
        assert release.wait(10)
        order.append(f"sink {batch_id}")

    sink = OverlappedSink(slow, SinkWal(tmp_path / "wal"))
    sink(Collected(table(0)), 0)
    assert entered.wait(10)
    order.append("spark commits 0 and computes 1")  # the call has returned: Spark is free to go on
    assert sink.wal.pending() == [0]  # ... and batch 0 is safe in its file while the sink works on it
    assert sink.wal.read(0).equals(table(0))
    assert sink.last_finished is None  # what the lag gauge counts as processed: nothing yet
    release.set()
    sink(Collected(table(1)), 1)  # waits for batch 0 before handing over 1
    assert order[:2] == ["spark commits 0 and computes 1", "sink 0"]
    assert sink.last_finished == 0
    sink.drain()
    assert order == ["spark commits 0 and computes 1", "sink 0", "sink 1"]
    assert sink.last_finished == 1


def test_a_failed_batch_fails_the_next_call_and_stays_in_its_file(tmp_path: Path) -> None:
    def fail_on_1(t: pa.Table, batch_id: int) -> None:
        if batch_id == 1:
            raise RuntimeError("store unavailable")

    sink = OverlappedSink(fail_on_1, SinkWal(tmp_path / "wal"))
    sink(Collected(table(0)), 0)
    sink(Collected(table(1)), 1)
    with pytest.raises(RuntimeError, match="store unavailable"):
        sink(Collected(table(2)), 2)  # Spark sees the failure here and stops the query without committing 2
    assert sink.wal.pending() == [1]  # 1 is retried first on the next start; 2 was never handed over


def test_failure_is_visible_without_another_batch(tmp_path: Path) -> None:
    def broken(t: pa.Table, batch_id: int) -> None:
        raise ValueError(f"bad batch {batch_id}")

    sink = OverlappedSink(broken, SinkWal(tmp_path / "wal"))
    assert sink.failure() is None
    sink(Collected(table(0)), 0)
    with pytest.raises(ValueError, match="bad batch 0"):
        sink.drain()
    sink(Collected(table(1)), 1)  # an idle stream: no next call will come to report it
    deadline = time.monotonic() + 10
    while sink.failure() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert str(sink.failure()) == "bad batch 1"  # what the scorer's main loop polls


def test_recover_finishes_left_batches_in_order(tmp_path: Path) -> None:
    wal = SinkWal(tmp_path / "wal")
    for batch_id in (7, 5):
        wal.write(batch_id, table(batch_id, rows=2))
    (wal.root / "000000000009.tmp").write_bytes(b"half a file")  # a crash during the write: never committed
    run = Recorder()
    assert OverlappedSink(run, SinkWal(tmp_path / "wal")).recover() == 2
    assert run.seen == [(5, [0, 1]), (7, [0, 1])]
    assert wal.pending() == []


def reading(station: str, seq: int) -> bytes:
    return json.dumps({"schema_version": 1, "station_id": station, "ts": datetime.now(UTC).isoformat(), "seq": seq,
                       "metrics": {"pm2_5": 5.0 + seq, "temperature": 11.0}}).encode()


def test_the_scorer_finishes_a_left_batch_into_the_store_before_it_starts(tmp_path: Path,
                                                                            registry: Registry) -> None:
    settings = scorer_settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, sqlite_path=tmp_path / "c.db",
                               scorer_metrics_port=0, scorer_sink_overlap=True)
    (settings.checkpoint_dir / "spark" / "offsets").mkdir(parents=True)  # an existing checkpoint: kept
    raw = pa.record_batch([
        pa.array([b"st-1", b"st-2"], pa.binary()), pa.array([reading("st-1", 1), reading("st-2", 2)], pa.binary()),
        pa.array(["readings"] * 2), pa.array([0, 0], pa.int32()), pa.array([10, 11], pa.int64()),
        pa.array([0, 0], pa.int64()),
    ], names=["key", "value", "topic", "partition", "offset", "timestamp_ms"])
    left = pa.Table.from_batches([Decoder(registry, 300).decode_batch(raw)])
    SinkWal(sink_wal_dir(settings)).write(0, left)  # the previous process died while the sink wrote batch 0

    sink = build_sink(settings, registry, load_rules(settings.rules_path, registry))
    before = phase_counts(*SINK_PHASES)
    try:
        fn, overlapped = foreach_batch(settings, sink)
        assert fn is overlapped and overlapped is not None and overlapped.wal.pending() == []
        assert phase_counts(*SINK_PHASES) == {p: n + 1 for p, n in before.items()}  # each phase of the batch timed
    finally:
        sink.store.close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        stored = conn.execute("SELECT station_id, seq, zscores FROM readings ORDER BY station_id").fetchall()
    assert [(s, q) for s, q, _ in stored] == [("st-1", 1), ("st-2", 2)]
    assert json.loads(stored[0][2])["pm2_5"] == pytest.approx((6.0 - 10) / 5)  # scored by the sink

    inline, none = foreach_batch(scorer_settings(data_dir=tmp_path, scorer_sink_overlap=False), sink)
    assert inline is sink and none is None
