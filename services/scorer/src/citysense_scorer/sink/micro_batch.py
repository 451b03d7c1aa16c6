"""The micro-batch sink (``foreachBatch``): engine, store writes, alert events and dead letters.

What "exactly once" means here
------------------------------
Spark re-runs a micro-batch after a crash with the same offsets (the offset log in the checkpoint). Every effect of a
batch is therefore made idempotent rather than transactional:

- Store rows (readings by (station_id, ts, seq), stations by newest ``last_seen``, alerts by ``alert_id`` with
  newer-``updated_at``-wins) are upserts: writing a batch twice leaves the store as writing it once.
- Engine state is versioned by batch id (:mod:`citysense_scorer.alerts.engine_log`). A re-run of batch N whose input and
  events were already logged re-uses the logged events instead of applying N to the state a second time, so the same
  ``event_id`` values come out (event ids are content hashes, never random).
- Alert events and dead letters are produced with an idempotent producer; after Kafka acknowledged all of them a
  ``done`` marker records the topics' end positions. A re-run of a batch without its marker reads the output topics
  back from the previous marker's positions and skips every message whose ``event_id`` (alerts) or source position
  (dead letters) header is already there. Result: each event is on ``citysense.alerts`` exactly once, as long as
  the scorer is the only writer of the batch's events (the single-writer assumption; run one scorer per checkpoint).

Consumers still see at-least-once delivery of *their* reads, so they dedupe by ``event_id`` too (the notifier does).

A dead letter that Kafka rejects permanently as too large (it cannot happen with the contract's 64 KiB payload cut
unless the DLQ topic's or the producer's size limit is far below 1 MB) is logged and counted in
``citysense_scorer_dead_letters_undelivered_total``; failing the batch would re-run it forever and stop the scorer.
Alert events are never given up on: any failure to produce one fails the batch, which Spark then re-runs.

A full store disk (``StoreFull``) does not fail the batch: the sink holds it and retries the (idempotent) store write
with backoff up to ``STORE_FULL_RETRY_MAX_S``, logging each failure, until space returns. Failing it would stop the
scorer, and a restarted scorer would only meet the same full disk again; meanwhile readings wait in Kafka.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from citysense_common.contract import (
    AlertEvent,
    ContractError,
    DeadLetterReason,
    dead_letter,
    parse_reading,
)
from citysense_common.kafka import producer_config
from citysense_common.registry import Registry
from citysense_common.store.base import AlertRecord, StationRecord, Store, StoreFull
from citysense_common.store.reading_batch import ReadingBatch
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from citysense_scorer import metrics as m
from citysense_scorer.alerts.engine import AlertEngine, BatchInput
from citysense_scorer.alerts.engine_log import EngineLog
from citysense_scorer.alerts.scores import RegistryScorer
from citysense_scorer.alerts.series_table import runs
from citysense_scorer.health.spark import STATION_Z_PREFIX
from citysense_scorer.settings import ScorerSettings
from citysense_scorer.sink.health import (
    apply_station_status,
    exclude_faulty,
    health_columns,
    judge_outliers,
    split_health,
)

log = logging.getLogger(__name__)
EVENT_HEADER = "event_id"
DLQ_HEADER = "source_position"
# Errors that no retry can fix: the message is bigger than the producer's or the broker's limit.
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
STORE_FULL_RETRY_MAX_S = 30.0


class BatchSink:
    def __init__(self, settings: ScorerSettings, registry: Registry, engine: AlertEngine, engine_log: EngineLog,
                 store: Store) -> None:
        self.settings = settings
        self.registry = registry
        self.engine = engine
        self.log = engine_log
        self.store = store
        self.metric_names = list(registry.metrics)
        self.scores = RegistryScorer(registry, settings.profile, settings.scorer_z_bound)
        self.producer = Producer(producer_config(settings))
        self._positions: dict[str, dict[int, int]] = {}

    # ------------------------------------------------------------------------------------------------------------
    def __call__(self, df: Any, batch_id: int) -> None:
        """The inline ``foreachBatch`` function (the scorer runs :meth:`run` overlapped, see
        :mod:`citysense_scorer.sink.overlap`)."""
        self.run(df.toArrow(), batch_id)

    def run(self, table: pa.Table, batch_id: int) -> None:
        started = time.monotonic()
        try:
            self.process(table, batch_id)
            m.BATCHES.labels("ok").inc()
        except Exception:
            m.BATCHES.labels("failed").inc()
            raise
        finally:
            m.BATCH_SECONDS.observe(time.monotonic() - started)

    def process(self, table: pa.Table, batch_id: int) -> None:
        # Consumes the table: each Arrow column is freed as soon as it is converted, so a large batch does not hold
        # both copies at once (the driver's peak memory).
        laps = m.Laps()
        pdf = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
        pdf, health_events = split_health(pdf)  # station-health events ride on their own rows
        bad = pdf[pdf["reason"].notna()]
        good = judge_outliers(self.scores.add_to(pdf[pdf["reason"].isna()]), self.settings.scorer_z_bound)
        good["ts_ms"] = (good["ts"].astype("datetime64[ms, UTC]").astype("int64")) if len(good) else pd.Series(
            dtype="int64")
        replay = self.log.has(batch_id)
        if replay:
            m.REPLAYED.inc()
            entry = self.log.read(batch_id)
            events, watermark = entry["events"], entry["watermark"]
        else:
            watermark = self.engine.watermark()
        late = good["ts_ms"].to_numpy() < watermark if len(good) else np.zeros(0, dtype=bool)
        good["late"] = late
        laps.lap("prepare")
        if not replay:
            ontime = good[~late]
            data = self.engine.reduce(exclude_faulty(self._engine_frame(ontime), ontime)) if len(ontime) \
                else _empty_input()
            # clock faults: the stations whose readings came from the future, and valid readings (late or not)
            data = replace(data, clocks=self.engine.reduce_clocks(_from_the_future(bad), good))
            events = self.engine.apply(batch_id, data) if len(ontime) or len(data.clocks) \
                else self._advance(batch_id)
            self.log.write(batch_id, data, events, [], self.engine, watermark=watermark)
        laps.lap("engine")
        events = [*events, *health_events]  # recomputed identically by Spark on a re-run; produce() dedupes
        received_at = datetime.now(UTC)
        dead = self._dead_letters(bad, received_at)
        # Alerts first: they are what people wait for (reading -> alert readable is the latency that matters).
        self._stored(batch_id, self.store.upsert_alerts, _alert_records(events))
        if not self.log.is_done(batch_id):
            self._produce(batch_id, events, dead, replay)
        laps.lap("alerts")
        self._stored(batch_id, self.store.write_reading_batch, self._reading_batch(good, received_at))
        laps.lap("readings")
        self._stored(batch_id, self.store.upsert_stations, _stations(good, self.metric_names))
        self._stored(batch_id, apply_station_status, self.store, health_events)
        laps.lap("stations")
        m.ROWS.labels("valid").inc(int((~late).sum()))
        m.ROWS.labels("late").inc(int(late.sum()))
        m.ROWS.labels("dead_letter").inc(len(bad))
        for reason, count in bad["reason"].value_counts().items():
            m.DEAD_LETTERS.labels(reason).inc(int(count))
        for event in events:
            m.ALERT_EVENTS.labels(event.state.value, event.severity.value).inc()
        if self.engine.state.max_event_ms >= 0:
            m.WATERMARK.set(self.engine.watermark() / 1000)
        log.info("batch %d: %d valid (%d late), %d dead letters, %d alert events%s", batch_id, len(good),
                 int(late.sum()), len(bad), len(events), " (replayed)" if replay else "")

    def _stored(self, batch_id: int, write: Callable[..., None], *args: Any) -> None:
        """One store write of the batch; on a full store disk, wait and retry until it succeeds (see the module
        docstring)."""
        delay, since = 1.0, None
        while True:
            try:
                write(*args)
            except StoreFull as exc:
                since = since if since is not None else time.monotonic()
                log.error("batch %d: the store is full (%s); holding the batch, its readings wait in Kafka; retrying "
                          "in %.0f s", batch_id, exc, delay)
                time.sleep(delay)
                delay = min(STORE_FULL_RETRY_MAX_S, delay * 2)
                continue
            if since is not None:
                log.warning("batch %d: store writes again after %.0f s", batch_id, time.monotonic() - since)
            return

    def _advance(self, batch_id: int) -> list[AlertEvent]:
        self.engine.state.version = batch_id
        return []

    # ------------------------------------------------------------------------------------------------------------
    def _engine_frame(self, good: pd.DataFrame) -> pd.DataFrame:
        frame = good[["station_id", "ts_ms", "lat", "lon"]].copy()
        if "clock_ms" in good:  # caps each reading's event time for the watermark (see engine)
            frame["clock_ms"] = good["clock_ms"].fillna(good["ts_ms"]).to_numpy(dtype=np.int64)
        wanted = {metric for metric, _ in self.engine.series_keys}
        for metric in wanted:
            if metric in good:
                frame[metric] = good[metric]
        outliers = good["outliers"]
        frame["n_outliers"] = outliers.map(len)
        frame["outlier_names"] = outliers.map(lambda v: ",".join(v))
        zcols = [f"z_{n}" for n in self.metric_names if f"z_{n}" in good]  # the registry z, not the station's
        frame["zmax"] = good[zcols].abs().max(axis=1) if zcols else np.nan
        return frame

    def _reading_batch(self, good: pd.DataFrame, received_at: datetime) -> ReadingBatch:
        """The batch's valid readings as columns, with both z-scores and any sensor faults."""
        names = self.metric_names
        # registry z, then the z against the station's own baseline (stored as station:<metric>)
        zcols = [f"{prefix}{n}" for prefix in ("z_", STATION_Z_PREFIX) for n in names if f"{prefix}{n}" in good]
        n = len(good)
        return ReadingBatch(
            station_id=good["station_id"].tolist(),
            ts_ms=good["ts_ms"].to_numpy(dtype="int64"), seq=good["seq"].to_numpy(dtype="int64"),
            metric_names=tuple(names), values=good[names].to_numpy(dtype="float64").reshape(n, len(names)),
            lat=good["lat"].to_numpy(dtype="float64"), lon=good["lon"].to_numpy(dtype="float64"),
            outliers=good["outliers"].tolist(), z_names=tuple(c[2:] for c in zcols),
            zscores=np.round(good[zcols].to_numpy(dtype="float64").reshape(n, len(zcols)), 4),
            late=good["late"].to_numpy(dtype=bool), ingested_at=received_at,
            faults=health_columns(good),
        )

    def _dead_letters(self, bad: pd.DataFrame, received_at: datetime) -> list[tuple[str | None, bytes, str]]:
        """(key, dead-letter JSON, source position) per rejected row. ``payload`` arrives as bytes (the head of the
        original value, possibly not UTF-8) with the whole value's ``payload_size`` and ``payload_sha256``;
        :func:`dead_letter` decodes it with replacement characters and bounds it."""
        missing = pd.Series([None] * len(bad), index=bad.index, dtype=object)
        out = []
        for key, topic, part, offset, reason, detail, payload, size, sha in zip(
                bad["key"], bad["topic"], bad["partition"], bad["offset"], bad["reason"], bad["detail"],
                bad["payload"], bad.get("payload_size", missing), bad.get("payload_sha256", missing), strict=True):
            key = key if isinstance(key, str) else None  # pandas turns a missing key into NaN
            payload = payload if isinstance(payload, bytes | str) else None
            letter = dead_letter(DeadLetterReason(reason), detail or reason, payload, topic=topic,
                                 partition=int(part), offset=int(offset), key=key, received_at=received_at,
                                 payload_size=None if size is None or pd.isna(size) else int(size),
                                 payload_sha256=sha if isinstance(sha, str) else None)
            out.append((key, letter.to_json(), f"{topic}:{int(part)}:{int(offset)}"))
        return out

    # -- Kafka output with replay dedupe -------------------------------------------------------------------------
    def _produce(self, batch_id: int, events: list[AlertEvent], dead: list[tuple[str | None, bytes, str]],
                 replay: bool) -> None:
        s = self.settings
        seen_events: set[str] = set()
        seen_dead: set[str] = set()
        if replay:
            start = self.log.last_positions(batch_id)
            seen_events = read_back(s, s.alerts_topic, start.get(s.alerts_topic, {}), EVENT_HEADER)
            seen_dead = read_back(s, s.dlq_topic, start.get(s.dlq_topic, {}), DLQ_HEADER)
            log.info("batch %d re-run: %d of %d events and %d of %d dead letters already on Kafka", batch_id,
                     len(seen_events & {e.event_id for e in events}), len(events), len(seen_dead), len(dead))
        positions: dict[str, dict[int, int]] = {s.alerts_topic: {}, s.dlq_topic: {}}
        errors: list[str] = []
        rejected: list[tuple[str, int, str]] = []  # dead letters Kafka refuses for good: (source, bytes, error)

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                if msg.topic() == s.dlq_topic and err.code() in TOO_LARGE:
                    rejected.append((_header(msg, DLQ_HEADER), len(msg.value() or b""), str(err)))
                else:
                    errors.append(str(err))
            else:
                parts = positions[msg.topic()]
                parts[msg.partition()] = max(parts.get(msg.partition(), 0), msg.offset() + 1)

        for event in events:
            if event.event_id in seen_events:
                continue
            self._send(s.alerts_topic, event.station_id, event.to_json(), [(EVENT_HEADER, event.event_id.encode()),
                       ("scorer_batch", str(batch_id).encode())], delivered)
        for key, value, source in dead:
            if source in seen_dead:
                continue
            try:
                self._send(s.dlq_topic, key, value, [(DLQ_HEADER, source.encode())], delivered)
            except KafkaException as exc:  # refused before sending, e.g. above the producer's message.max.bytes
                if exc.args[0].code() not in TOO_LARGE:
                    raise
                rejected.append((source, len(value), str(exc.args[0])))
        remaining = self.producer.flush(60)
        if remaining or errors:
            raise RuntimeError(f"batch {batch_id}: {remaining} messages unsent, errors: {errors[:3]}")
        for source, size, error in rejected:
            m.DEAD_LETTERS_UNDELIVERED.labels("too_large").inc()
            log.error("batch %d: dead letter of %s (%d bytes) not written, Kafka refuses it as too large: %s",
                      batch_id, source, size, error)
        self.log.mark_done(batch_id, positions)

    def _send(self, topic: str, key: str | None, value: bytes, headers: list, callback: Any) -> None:
        """Queue one message; raises ``KafkaException`` when the client refuses it (e.g. too large)."""
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, on_delivery=callback)
                return
            except BufferError:  # local queue full: let deliveries drain
                self.producer.poll(0.1)


def read_back(settings: ScorerSettings, topic: str, start: dict[int, int], header: str,
              timeout: float = 60.0) -> set[str]:
    """Header values of every message from ``start`` (default: the beginning) to the end of each partition."""
    from citysense_scorer.source.offsets import partition_ids

    conf = {"bootstrap.servers": settings.bootstrap, **settings.kafka_options}
    parts = partition_ids(conf, topic)
    consumer = Consumer({**conf, "group.id": "citysense-scorer-readback", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "enable.partition.eof": True})
    found: set[str] = set()
    try:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in parts])
        pending = set(parts)
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading back {topic} did not reach the end of partitions {sorted(pending)}")
            for msg in consumer.consume(1000, timeout=0.5):
                if msg.error() is not None:
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise RuntimeError(f"reading back {topic}: {msg.error()}")
                for name, value in msg.headers() or ():
                    if name == header and value is not None:
                        found.add(value.decode())
    finally:
        consumer.close()
    return found


def _header(msg: Any, name: str) -> str:
    for key, value in msg.headers() or ():
        if key == name and value is not None:
            return value.decode(errors="replace")
    return f"{msg.topic()}:?"


def _empty_input() -> BatchInput:
    return BatchInput(pd.DataFrame(), pd.DataFrame())


def _from_the_future(bad: pd.DataFrame) -> pd.DataFrame:
    """station_id, ts_ms and clock_ms of the dead letters rejected as from the future. Their station and ts come from
    the payload (a rejected row carries no decoded columns), which is whole: such a reading passed the contract's
    parse, so it is within the size limit."""
    rows = bad[bad["reason"] == DeadLetterReason.FUTURE_TIMESTAMP.value] if "clock_ms" in bad else bad.iloc[:0]
    out: dict[str, list] = {"station_id": [], "ts_ms": [], "clock_ms": []}
    for payload, clock in zip(rows["payload"], rows["clock_ms"], strict=True):
        found = _station_and_ts(payload)
        if found is not None and clock == clock:  # clock == clock: not NaN
            out["station_id"].append(found[0])
            out["ts_ms"].append(found[1])
            out["clock_ms"].append(int(clock))
    return pd.DataFrame({"station_id": pd.Series(out["station_id"], dtype=object),
                         "ts_ms": pd.Series(out["ts_ms"], dtype=np.int64),
                         "clock_ms": pd.Series(out["clock_ms"], dtype=np.int64)})


def _station_and_ts(payload: Any) -> tuple[str, int] | None:
    """(station_id, ts in ms) of a reading's bytes: an ISO timestamp directly, any other spelling the contract
    accepts through its parser; None when the bytes are not a reading."""
    if not isinstance(payload, bytes | str):
        return None
    try:
        doc = orjson.loads(payload)
        station, ts = doc["station_id"], doc["ts"]
        if isinstance(station, str) and isinstance(ts, str) and (moment := datetime.fromisoformat(ts)).tzinfo:
            return station, int(moment.timestamp() * 1000)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        pass
    try:
        reading = parse_reading(payload)
    except ContractError:
        return None
    return reading.station_id, int(reading.ts.timestamp() * 1000)


def _alert_records(events: list[AlertEvent]) -> list[AlertRecord]:
    latest: dict[str, AlertEvent] = {}
    for event in events:  # events of one alert come in order within a batch; the last one is its state
        latest[event.alert_id] = event
    return [AlertRecord.of(e) for e in latest.values()]


def _stations(good: pd.DataFrame, names: list[str]) -> list[StationRecord]:
    """Per station of the batch, its newest reading (by event time, then seq) as the station's latest state.

    Picked with one sort and the last row of each station's run, values read as plain lists: cheaper than a pandas
    sort + groupby + itertuples, in the sink thread that competes with the next micro-batch for the CPU."""
    if good.empty:
        return []
    codes, _ = pd.factorize(good["station_id"], sort=True)  # records in station id order
    order = np.lexsort((good["seq"].to_numpy(dtype=np.int64), good["ts_ms"].to_numpy(dtype=np.int64), codes))
    _, stop = runs(codes[order])
    pick = order[stop - 1]
    values = good[names].to_numpy(dtype="float64")[pick].tolist()
    lat = good["lat"].to_numpy(dtype="float64")[pick].tolist()
    lon = good["lon"].to_numpy(dtype="float64")[pick].tolist()
    return [
        StationRecord(station_id=station, last_seen=datetime.fromtimestamp(ts_ms / 1000, tz=UTC), last_seq=seq,
                      latest={n: v for n, v in zip(names, row, strict=True) if v == v},  # v == v: not NaN
                      lat=None if la != la else la, lon=None if lo != lo else lo)
        for station, ts_ms, seq, row, la, lo in zip(
            good["station_id"].to_numpy(dtype=object)[pick].tolist(),
            good["ts_ms"].to_numpy(dtype=np.int64)[pick].tolist(),
            good["seq"].to_numpy(dtype=np.int64)[pick].tolist(), values, lat, lon, strict=True)
    ]

