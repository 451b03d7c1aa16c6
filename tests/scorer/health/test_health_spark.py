"""Station health in a real streaming query: transformWithStateInPandas state, processing-time offline timers."""

from __future__ import annotations

import base64
import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from citysense_common.contract import AlertEvent, AlertKind, AlertState
from citysense_common.registry import Registry
from citysense_scorer.health.bucket import HealthContext
from citysense_scorer.health.forecast import ForecastTarget
from citysense_scorer.health.offline import OfflineConfig
from citysense_scorer.health.spark import attach_health
from citysense_scorer.sink.health import split_health

SCHEMA = ("key string, topic string, partition int, offset long, timestamp_ms long, reason string, detail string, "
          "payload string, station_id string, ts timestamp, seq long, lat double, lon double, temperature double, "
          "pm2_5 double, pm10 double")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def rows(station: str, temps: list[float], start: int = 0) -> list[dict[str, Any]]:
    return [dict(key=station, topic="t", partition=0, offset=start + i, timestamp_ms=0, reason=None, detail=None,
                 payload=None, station_id=station, ts=T0 + timedelta(seconds=start + i), seq=start + i, lat=52.5,
                 lon=13.4, temperature=t, pm2_5=5.0 + (i % 3), pm10=12.0 + (i % 4))
            for i, t in enumerate(temps)]


ARROW = pa.schema([
    ("key", pa.string()), ("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
    ("timestamp_ms", pa.int64()), ("reason", pa.string()), ("detail", pa.string()), ("payload", pa.string()),
    ("station_id", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("seq", pa.int64()), ("lat", pa.float64()),
    ("lon", pa.float64()), ("temperature", pa.float64()), ("pm2_5", pa.float64()), ("pm10", pa.float64()),
])


def write(directory: Path, name: str, records: list[dict[str, Any]]) -> None:
    tmp = directory.parent / f".{name}"
    pq.write_table(pa.Table.from_pylist(records, schema=ARROW), tmp)
    tmp.rename(directory / name)  # atomic: the file source never sees a half-written file


def wait_for(query: Any, batches: list[pd.DataFrame], predicate: Any, timeout: float = 240) -> list[AlertEvent]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if query.exception() is not None:
            raise AssertionError(f"query failed: {query.exception()}")
        events = [e for b in list(batches) for e in split_health(b)[1]]
        if predicate(events):
            return events
        time.sleep(0.5)
    seen = [(e.rule_id, e.state) for b in batches for e in split_health(b)[1]]
    raise AssertionError(f"condition not met; events: {seen}")


@pytest.mark.timeout(600)
def test_faults_and_offline_in_a_stream(spark: Any, registry: Registry, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    ctx = HealthContext(metrics=dict(registry.metrics), profile="city",
                        offline=OfflineConfig(default_s=3600, groups=(("st-off*", 2.0),)),
                        targets=(ForecastTarget("pm25-eu-24h", "pm2_5", 86_400_000, 25.0),))
    frozen = [10.0 + 0.1 * (i % 7) for i in range(10)] + [20.0] * 35
    dead = dict(rows("x", [0.0])[0], reason="malformed_json", detail="not valid JSON", payload="{", station_id=None,
                ts=None, seq=None, temperature=None, pm2_5=None, pm10=None)
    write(inbox, "1.parquet", rows("st-flat", frozen) + rows("st-off-1", [11.0, 11.5]) + [dead])
    stream = spark.readStream.schema(SCHEMA).parquet(str(inbox))
    batches: list[pd.DataFrame] = []
    query = (attach_health(stream, ctx).writeStream
             .foreachBatch(lambda df, _id: batches.append(df.toPandas()))
             .option("checkpointLocation", str(tmp_path / "ckpt"))
             .trigger(processingTime="500 milliseconds").start())
    try:
        events = wait_for(query, batches, lambda ev: any(e.kind is AlertKind.STATION_OFFLINE for e in ev))
        faults = [e for e in events if e.kind is AlertKind.SENSOR_FAULT]
        assert [(e.rule_id, e.state) for e in faults] == [("fault-flatline.temperature", AlertState.OPEN)]
        assert [e.station_id for e in events if e.kind is AlertKind.STATION_OFFLINE] == ["st-off-1"]
        readings = pd.concat([split_health(b)[0] for b in batches], ignore_index=True)
        flat = readings[readings["station_id"] == "st-flat"].sort_values("seq")
        flagged = flat.loc[flat["fault_temperature"].astype(bool), "seq"].tolist()
        assert flagged == list(range(39, 45))  # the 30th identical value onwards
        assert not flat["fault_pm2_5"].astype(bool).any()
        assert flat["z_station:temperature"].isna().all()  # baselines still warming up (300 samples)
        # dead letters pass through with their columns; readings lose those nobody reads of them
        [dl] = readings[readings["reason"].notna()].to_dict("records")
        assert (dl["reason"], dl["detail"], dl["payload"], dl["key"], dl["offset"]) == (
            "malformed_json", "not valid JSON", "{", "x", 0)
        assert flat["key"].isna().all() and flat["offset"].isna().all()
        write(inbox, "2.parquet", rows("st-off-1", [12.0], start=100))
        wait_for(query, batches, lambda ev: any(e.kind is AlertKind.STATION_OFFLINE and e.state is AlertState.RESOLVED
                                         for e in ev))
    finally:
        query.stop()
    # State checkpointed the cheap way (citysense_scorer.job.session): a changelog per batch, snapshots now and then.
    state = [f.name for f in (tmp_path / "ckpt" / "state").rglob("*")]
    changelogs, snapshots = sum(n.endswith(".changelog") for n in state), sum(n.endswith(".zip") for n in state)
    assert changelogs > snapshots, state
    # the forecast history beside the bucket documents: one entry per bucket of event time and health key
    history = (spark.read.format("statestore").option("stateVarName", "forecast_history")
               .load(str(tmp_path / "ckpt")).toPandas())
    [entry] = history.to_dict("records")  # both stations hash to bucket 7 of 8
    assert entry["key"]["health_key"] == " bucket 7" and entry["user_map_key"]["bucket"] == T0.timestamp() // 300
    assert entry["user_map_value"]["cells"].startswith("pm2_5;2;")  # the pm2_5 sums and counts of 2 stations


# -- the bucket a worker keeps between micro-batches (no Spark: the state handle is the boundary) -----------------

class ValueStateDouble:
    def __init__(self) -> None:
        self.value: tuple | None = None
        self.gets = 0

    def exists(self) -> bool:
        return self.value is not None

    def get(self) -> tuple | None:
        self.gets += 1
        return self.value

    def update(self, value: tuple) -> None:
        self.value = value

    def clear(self) -> None:
        self.value = None


class MapStateDouble:
    def __init__(self) -> None:
        self.entries: dict[tuple, tuple] = {}

    def iterator(self) -> Any:
        return iter(list(self.entries.items()))

    def updateValue(self, key: tuple, value: tuple) -> None:  # noqa: N802
        self.entries[key] = value

    def removeKey(self, key: tuple) -> None:  # noqa: N802
        del self.entries[key]


class HandleDouble:
    def __init__(self) -> None:
        self.state = ValueStateDouble()  # "health": the bucket document
        self.revision = ValueStateDouble()
        self.history = MapStateDouble()
        self.timers: set[int] = set()

    def getValueState(self, name: str, schema: Any) -> ValueStateDouble:  # noqa: N802 - Spark's name
        return {"health": self.state, "revision": self.revision}[name]

    def written_by(self, revision: str) -> None:
        """The bucket as another worker (or an older state version) left it: same document, other revision."""
        self.state.value = (f"{revision}\n" + self.state.value[0].split("\n", 1)[1],)
        self.revision.value = (revision,)

    def getMapState(self, name: str, key_schema: Any, value_schema: Any) -> MapStateDouble:  # noqa: N802
        return self.history

    def listTimers(self) -> list[int]:  # noqa: N802
        return sorted(self.timers)

    def registerTimer(self, ms: int) -> None:  # noqa: N802
        self.timers.add(ms)

    def deleteTimer(self, ms: int) -> None:  # noqa: N802
        self.timers.discard(ms)


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def getCurrentProcessingTimeInMs(self) -> int:  # noqa: N802
        return self.ms


def processor(registry: Registry) -> tuple[Any, HandleDouble]:
    from citysense_scorer.health.spark import FAULT_PREFIX, PACKED, STATION_Z_PREFIX, StationHealthProcessor

    metrics = ["temperature", "pm2_5", "pm10"]
    ctx = HealthContext(metrics={m: registry.metrics[m] for m in metrics}, profile="city",
                        targets=(ForecastTarget("pm25-eu-24h", "pm2_5", 86_400_000, 25.0),))
    columns = ["station_id", "ts", "seq", "lat", "lon", *metrics, PACKED, *(FAULT_PREFIX + m for m in metrics),
               *(STATION_Z_PREFIX + m for m in metrics), "health_event"]
    proc, handle = StationHealthProcessor(ctx, columns), HandleDouble()
    proc.init(handle)
    return proc, handle


def group(start: int, n: int = 40) -> pd.DataFrame:
    frame = pd.DataFrame(rows("st-a", [20.0] * n, start) + rows("st-b", [10.0 + (i % 5) for i in range(n)], start))
    frame["packed_columns"] = None
    return frame[["station_id", "ts", "seq", "lat", "lon", "temperature", "pm2_5", "pm10", "packed_columns"]]


def batch(proc: Any, start: int) -> tuple[pd.DataFrame, list[str]]:
    """(the readings with their verdict columns, the events' JSON)."""
    key = (" bucket 0",)
    now = int((T0 + timedelta(seconds=start + 40)).timestamp() * 1000)
    readings, *event_rows = proc.handleInputRows(key, iter([group(start)]), Clock(now))
    return readings, [e for frame in event_rows for e in frame["health_event"]]


def test_the_worker_reuses_the_bucket_it_wrote_and_reads_any_other(registry: Registry, monkeypatch) -> None:  # noqa: ANN001
    from citysense_scorer.health import spark as health_spark

    reads: list[bool] = []  # one entry per bucket built from the state (True: from a stored document)

    class CountingBucket(health_spark.HealthBucket):
        def __init__(self, ctx: HealthContext, text: str | None = None, history: Any = ()) -> None:
            reads.append(text is not None)
            super().__init__(ctx, text, history)

    kept: dict = {}
    monkeypatch.setattr(health_spark, "HealthBucket", CountingBucket)
    monkeypatch.setattr(health_spark, "_KEPT", kept)
    proc, handle = processor(registry)
    cold, cold_handle = processor(registry)  # the same batches with nothing kept: read from the state every time

    warm_reads, events, doc_reads = [], [], []
    for start in (0, 40, 80):
        before, fetched = len(reads), handle.state.gets
        got = batch(proc, start)
        warm_reads.append(reads[before:])
        doc_reads.append(handle.state.gets - fetched)
        mine = dict(kept)
        kept.clear()
        want = batch(cold, start)
        kept.clear()
        kept.update(mine)
        pd.testing.assert_frame_equal(got[0], want[0])
        assert got[1] == want[1]
        events += got[1]
        assert handle.state.value[0].split("\n", 1)[1] == cold_handle.state.value[0].split("\n", 1)[1]
        assert handle.history.entries == cold_handle.history.entries != {}
        assert handle.timers == cold_handle.timers
    assert warm_reads == [[False], [], []]  # a new bucket for the first batch, then the kept one, never parsed
    assert doc_reads == [1, 0, 0]  # nor fetched from the state store: the kept bucket only checks the revision
    assert handle.revision.value[0] == handle.state.value[0].split("\n", 1)[0]
    assert reads.count(True) == 2  # while the cold side parsed the stored JSON for batches 2 and 3
    assert got[0]["fault_temperature"].any()  # st-a's frozen temperature: flagged from the 30th reading on
    assert any('"fault-flatline.temperature"' in e for e in events)

    # a document this worker did not write (another worker, or an older state version Spark re-runs from)
    handle.written_by("someone-else")
    before = len(reads)
    batch(proc, 120)
    assert reads[before:] == [True]
    # a checkpoint written before the revision had a variable of its own: the document is read once
    handle.revision.clear()
    before = len(reads)
    batch(proc, 140)
    batch(proc, 150)
    assert reads[before:] == [True]

    # a batch that fails half-way leaves no kept bucket behind: the next batch reads the stored state
    def broken(*args: Any) -> None:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(CountingBucket, "process_columns", broken)
        with pytest.raises(RuntimeError, match="boom"):
            batch(proc, 160)
    assert " bucket 0" not in kept
    before = len(reads)
    batch(proc, 160)
    assert reads[before:] == [True]


def test_output_frames_are_converted_without_writing_into_a_column_selection(registry: Registry) -> None:
    """The processor hands Spark column selections with all-null columns (dead-letter columns, the event column) as
    object columns. Writing them into the selection made pandas warn per column and group: thousands of
    SettingWithCopyWarning lines in the scorer's log per micro-batch at 5,000 stations."""
    import warnings

    from citysense_scorer.health.spark import _plain

    frame = pd.DataFrame({"station_id": ["a", "b"], "gone": [float("nan")] * 2, "x": [1.0, 2.0],
                          "s": pd.array(["p", None], dtype="string")})
    selection = frame[["station_id", "gone", "s"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _plain(selection)
        proc, _ = processor(registry)
        readings, *_ = proc.handleInputRows((" bucket 0",), iter([group(0)]), Clock(int(T0.timestamp() * 1000)))
    assert out["gone"].dtype == object and out["gone"].tolist() == [None, None]
    assert out["s"].dtype == object and out["s"].iloc[0] == "p" and pd.isna(out["s"].iloc[1])
    assert out["station_id"].tolist() == ["a", "b"]
    assert selection["gone"].dtype == "float64"  # the caller's frame is left as it was
    # A double output column stays float (NaN is null to Arrow); nullable ints still become objects.
    doubles = pd.DataFrame({"z": [float("nan")] * 2, "n": pd.array([1, None], dtype="Int64"), "ok": [True, False]})
    kept = _plain(doubles, frozenset({"z"}))
    assert kept["z"].dtype == "float64" and kept["ok"].dtype == bool
    assert kept["n"].dtype == object and kept["n"].iloc[0] == 1
    assert _plain(doubles)["z"].tolist() == [None, None]  # not declared double: all-null becomes None
    assert readings["health_event"].tolist() == [None] * len(readings)


def test_bucket_state_is_stored_compressed_and_earlier_layouts_still_read(registry: Registry) -> None:
    from citysense_scorer.health.bucket import HealthBucket
    from citysense_scorer.health.spark import encode_state, split_state, state_json

    proc, handle = processor(registry)
    batch(proc, 0)
    stored = handle.state.value[0]
    revision, body = split_state(stored)
    document = state_json(body)
    assert body.startswith(f"zs:{len(document)}:") and stored.isascii()
    assert len(stored) * 1.5 < len(document)  # 1.8x for these two stations (with the revision and base64)
    restored = HealthBucket(proc.ctx, document)
    assert set(restored.stations) == {"st-a", "st-b"}
    assert encode_state(revision, restored.dump_json()) == stored  # deterministic: same document, same value
    # what earlier versions wrote: zlib, "<revision>\n<JSON>" before the compression, plain JSON before revisions
    assert state_json("z:" + base64.b64encode(zlib.compress(document, 1)).decode()) == document
    plain = document.decode()
    assert split_state(f"r1\n{plain}") == ("r1", plain) and state_json(plain) == plain
    assert split_state(plain) == ("", plain)
    assert split_state(None) == ("", None) and state_json(None) is None


def test_a_worker_reads_a_bucket_an_earlier_version_stored_uncompressed(registry: Registry) -> None:
    """An existing checkpoint holds uncompressed documents; the first batch after the upgrade reads them and then
    writes compressed ones, with the same verdicts as a worker reading the same state compressed."""
    from citysense_scorer.health.spark import split_state, state_json

    upgraded, handle = processor(registry)
    reference, _ = processor(registry)
    batch(upgraded, 0)
    batch(reference, 0)
    revision, body = split_state(handle.state.value[0])
    document = state_json(body)
    for older in (document.decode(), "z:" + base64.b64encode(zlib.compress(document, 1)).decode()):
        handle.state.value = (f"older-worker\n{older}",)  # as written before zstd, and before the compression
        handle.revision.clear()  # and before the revision variable
        got, want = batch(upgraded, 40), batch(reference, 40)
        pd.testing.assert_frame_equal(got[0], want[0])
        assert got[1] == want[1]
        assert split_state(handle.state.value[0])[1].startswith("zs:")
        upgraded, handle = processor(registry)
        reference, _ = processor(registry)
        batch(upgraded, 0)
        batch(reference, 0)


def test_a_bucket_whose_stored_state_cannot_be_read_starts_afresh(registry: Registry, caplog) -> None:  # noqa: ANN001
    """Damaged bytes in the state store (a document or a history entry that is not valid base64, zlib or JSON) must
    not fail every micro-batch from then on: the bucket's stations start learning afresh, the error is logged with
    the key, and the next save writes a readable state and deletes the damaged history."""
    from citysense_scorer.health.spark import encode_state, split_state, state_json

    fresh, fresh_handle = processor(registry)
    want = batch(fresh, 0)
    damaged_documents = ["z:not base64 at all", "zs:100:not base64 at all", "zs:100:" + base64.b64encode(b"no zstd")
                         .decode(), "zs:" + base64.b64encode(b"no size").decode(), "zs:x:AAAA"]
    # valid JSON of the wrong shape: a track array missing, a list where a list of stations belongs, not an object
    good_doc = json.loads(state_json(split_state(fresh_handle.state.value[0])[1]))
    no_track = json.loads(json.dumps(good_doc))
    del no_track["tracks"]["has"]
    stations_not_a_list = {**good_doc, "tracks": {**good_doc["tracks"], "stations": 5}}
    misshapen = [encode_state("someone-else", json.dumps(d).encode()).split("\n", 1)[1]
                 for d in (no_track, stations_not_a_list, [1, 2], {**good_doc, "stations": None})]
    for damage in (*damaged_documents, *misshapen, "history"):
        proc, handle = processor(registry)
        batch(proc, 0)
        handle.written_by("someone-else")
        if damage != "history":
            handle.state.value = (f"someone-else\n{damage}",)
        else:
            [entry] = handle.history.entries
            handle.history.entries[entry] = ("pm2_5;2;eAFj",)  # truncated zlib stream
        with caplog.at_level("ERROR", logger="citysense_scorer.health.spark"):
            got = batch(proc, 0)
        assert [r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage()] != []
        assert " bucket 0" in caplog.text and "start learning afresh" in caplog.text
        caplog.clear()
        pd.testing.assert_frame_equal(got[0], want[0])  # the verdicts of a bucket that never had state
        assert got[1] == want[1]
        assert state_json(split_state(handle.state.value[0])[1]) is not None
        assert handle.history.entries == fresh_handle.history.entries  # the damaged entry rewritten, as fresh
