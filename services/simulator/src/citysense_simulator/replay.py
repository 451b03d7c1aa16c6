"""``citysense-simulator replay``: publish a CSV export as contract readings, in event-time order, time-compressed.

The whole file is read and sorted first (see :mod:`replay_sort`), then measurements of one station at one instant
are merged into one reading. Seq numbers count per station from 0 in event-time order, so replaying the same file
twice yields the same (station_id, ts, seq) identities and the store keeps one copy.

Pacing: with ``speed`` S, a reading whose event time is T seconds after the file's first event is sent T / S
seconds after the replay started (``--speed 3600``: one hour of data per second). ``speed=None`` sends as fast as
the producer accepts. Clock and sleep are injectable so tests never wait.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from citysense_common.contract import Location, Reading
from citysense_common.registry import Registry

from citysense_simulator.opensensemap_mapping import PhenomenonMapper
from citysense_simulator.progress import ProgressBar
from citysense_simulator.replay_csv import CsvSource, Measurement, ReadStats
from citysense_simulator.replay_sort import DEFAULT_CHUNK, sorted_measurements
from citysense_simulator.runner import Publisher

log = logging.getLogger("citysense.simulator.replay")


def parse_speed(text: str) -> float | None:
    """``--speed``: a positive factor, or 0 / ``max`` for as fast as possible (None)."""
    if text.strip().lower() in {"0", "max", "inf", "unlimited"}:
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ValueError(f"--speed must be a number (3600 = one hour per second) or 'max', got {text!r}") from None
    if not math.isfinite(speed) or speed < 0:
        raise ValueError(f"--speed must be positive, 0 or 'max', got {text!r}")
    return None if speed == 0 else speed


@dataclass
class ReplayResult:
    readings: int = 0
    stations: set[str] = field(default_factory=set)
    first: datetime | None = None
    last: datetime | None = None
    stats: ReadStats = field(default_factory=ReadStats)
    undelivered: int = 0
    failed: int = 0

    @property
    def station_names(self) -> dict[str, str]:
        """Station id -> name from the file (``boxName``); the reading contract has no field for it."""
        return self.stats.station_names


def group_readings(measurements: Iterable[Measurement]) -> Iterator[tuple[Reading, int]]:
    """Merge sorted measurements of one (station, instant) into a reading; yield it with its number of source rows.

    A station's location is the latest coordinates seen for it in the file (rows without coordinates inherit them).
    """
    seqs: dict[str, int] = {}
    where: dict[str, Location] = {}
    key: tuple[int, str] | None = None
    metrics: dict[str, float] = {}
    rows: set[int] = set()

    def emit() -> tuple[Reading, int]:
        assert key is not None
        ts_ms, station = key
        seq = seqs.get(station, 0)
        seqs[station] = seq + 1
        reading = Reading(schema_version=1, station_id=station, ts=datetime.fromtimestamp(ts_ms / 1000, UTC),
                          seq=seq, location=where.get(station), metrics=dict(metrics))
        return reading, len(rows)

    for m in measurements:
        if (m.ts_ms, m.station_id) != key:
            if key is not None:
                yield emit()
            key, metrics, rows = (m.ts_ms, m.station_id), {}, set()
        if not (math.isnan(m.lat) or math.isnan(m.lon)):
            where[m.station_id] = Location(lat=m.lat, lon=m.lon)
        metrics[m.metric] = m.value  # a repeated metric at the same instant: the later row wins
        rows.add(m.row)
    if key is not None:
        yield emit()


class Pacer:
    """Sleeps so that event-time gaps are replayed ``speed`` times faster than they happened."""

    def __init__(self, speed: float | None, clock: Callable[[], float], sleep: Callable[[float], object]) -> None:
        self.speed, self.clock, self.sleep = speed, clock, sleep
        self._origin: tuple[float, float] | None = None  # (first event time, wall time it was sent)

    def wait_for(self, event_time: float) -> None:
        if self.speed is None:
            return
        if self._origin is None:
            self._origin = (event_time, self.clock())
            return
        due = self._origin[1] + (event_time - self._origin[0]) / self.speed
        delay = due - self.clock()
        if delay > 0:
            self.sleep(delay)


def replay(path: str | Path, publisher: Publisher, registry: Registry, mapper: PhenomenonMapper, *,
           speed: float | None = None, phenomenon: str | None = None, unit: str | None = None,
           time_column: str | None = None, stop: threading.Event | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] | None = None,
           progress: TextIO | None = None, progress_tty: bool | None = None,
           chunk: int = DEFAULT_CHUNK) -> ReplayResult:
    """Replay one file into ``publisher``; returns what was sent and what was skipped."""
    stop = stop or threading.Event()
    source = CsvSource(path, registry, mapper, phenomenon=phenomenon, unit=unit, time_column=time_column)
    ordered = sorted_measurements(source, chunk=chunk)
    result = ReplayResult(stats=source.stats)
    # Pull the first item so the whole file is read (and validated) before anything is published or timed.
    first = next(ordered, None)
    total_rows = len(source.stats.rows_with_values)
    log.info("%s: %s layout, time column %r, %d rows, %d values (%d empty, %d unmapped skipped)", path,
             source.stats.layout, source.stats.time_column, source.stats.rows, source.stats.values,
             source.stats.empty, source.stats.unmapped)
    bar = ProgressBar(total_rows, stream=progress, clock=clock, tty=progress_tty) if progress is not None else None
    pacer = Pacer(speed, clock, sleep or stop.wait)
    failed_before = publisher.counts.failed
    batch: list[tuple[bytes, bytes]] = []
    if first is not None:
        for reading, rows in group_readings(_chain(first, ordered)):
            if stop.is_set():
                log.warning("stopped after %d readings", result.readings)
                break
            if speed is not None and batch:
                publisher.publish_batch(batch)  # paced: each reading leaves at its own moment
                batch = []
            pacer.wait_for(reading.ts.timestamp())
            batch.append((reading.station_id.encode(), reading.to_json()))
            result.readings += 1
            result.stations.add(reading.station_id)
            result.first = result.first or reading.ts
            result.last = reading.ts
            if len(batch) >= 1000:
                publisher.publish_batch(batch)
                batch = []
                publisher.poll()
            if bar is not None:
                bar.advance(rows)
    publisher.publish_batch(batch)
    publisher.poll()
    result.undelivered = publisher.close(60.0)
    result.failed = publisher.counts.failed - failed_before
    if bar is not None:
        bar.finish()
    return result


def _chain(first: Measurement, rest: Iterator[Measurement]) -> Iterator[Measurement]:
    yield first
    yield from rest
