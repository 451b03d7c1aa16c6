"""Event-time order for files larger than memory: sorted runs spilled to temporary files, then a k-way merge.

Up to ``chunk`` measurements are sorted in memory (about 200 bytes each, so the 500,000 default is ~100 MB); a
bigger file is cut into sorted runs written next to the system temp directory and merged with ``heapq.merge``,
which holds one measurement per run. Disk needed: about the size of the input again.
"""

from __future__ import annotations

import csv
import heapq
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TextIO

from citysense_simulator.replay_csv import Measurement

DEFAULT_CHUNK = 500_000


def _spill(run: list[Measurement], directory: Path, index: int) -> Path:
    path = directory / f"run-{index:05d}.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        # repr() round-trips floats exactly, including nan for a missing coordinate.
        writer.writerows((m.ts_ms, m.station_id, m.row, repr(m.lat), repr(m.lon), m.metric, repr(m.value))
                         for m in run)
    return path


def _read_run(handle: TextIO) -> Iterator[Measurement]:
    for ts_ms, station, row, lat, lon, metric, value in csv.reader(handle):
        yield Measurement(int(ts_ms), station, int(row), float(lat), float(lon), metric, float(value))


def sorted_measurements(source: Iterable[Measurement], chunk: int = DEFAULT_CHUNK,
                        tmp_dir: str | Path | None = None) -> Iterator[Measurement]:
    """All of ``source`` in (event time, station, row) order. The source is read completely before the first
    measurement is yielded (needed for a global order, and it gives the progress bar its total)."""
    iterator = iter(source)
    run: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="citysense-replay-", dir=tmp_dir) as tmp:
        paths: list[Path] = []
        for measurement in iterator:
            run.append(measurement)
            if len(run) >= chunk:
                run.sort()
                paths.append(_spill(run, Path(tmp), len(paths)))
                run = []
        run.sort()
        if not paths:
            yield from run
            return
        with ExitStack() as stack:
            runs = [_read_run(stack.enter_context(p.open(encoding="utf-8", newline=""))) for p in paths]
            yield from heapq.merge(*runs, iter(run))
