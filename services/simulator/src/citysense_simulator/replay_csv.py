"""Read replay CSVs into measurements (one station, one instant, one metric, one value).

Two layouts, told apart by their headers (names compared ignoring case, blanks and punctuation):

* **long** - one value per row with its phenomenon: openSenseMap's ``/statistics/descriptive?format=tidy`` export
  (``sensorId,boxId,boxName,lat,lon,phenomenon,unit,time_start,arithmeticMean_1h``) and its raw measurement
  downloads (``createdAt,value,...``). The phenomenon and unit are mapped through ``config/opensensemap.yaml``.
* **wide** - a plain readings table: ``station_id,ts,lat,lon`` and one column per registry metric (or alias).

The time column is found by its name (``ts``, ``time_start``, ``createdAt``, ...), else by its values: the one column
whose cells in the first rows are all ISO 8601 times (pandas' ``to_csv`` of an hourly ``day`` column, say), else
the user names it (``--time-column``). An unnamed column (pandas' default index) is never a metric. A box name
(``boxName``) is kept per station: the reading contract has no field for it.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is row 2. Every problem
names the file, the row and the column. Empty values are skipped and counted, never invented.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple, TextIO

from citysense_common.contract import STATION_ID_PATTERN
from citysense_common.registry import Registry

from citysense_simulator.opensensemap_mapping import PhenomenonMapper

log = logging.getLogger("citysense.simulator.replay")

STATION = ("stationid", "station", "boxid", "senseboxid")
SENSOR = ("sensorid",)
TIME = ("ts", "timestamp", "time", "timestart", "createdat", "datetime", "date")
LAT = ("lat", "latitude")
LON = ("lon", "lng", "long", "longitude")
PHENOMENON = ("phenomenon", "title")
UNIT = ("unit",)
VALUE = ("value",)
# Descriptive-statistics value column: "<operation>_<window>", e.g. arithmeticMean_1h.
STAT_VALUE = re.compile(r"^(arithmeticmean|geometricmean|harmonicmean|max|median|min|mode|rootmeansquare|"
                        r"standarddeviation|sum|variance)_\w+$", re.IGNORECASE)
# Descriptive columns carried along that are never metrics.
DESCRIPTIVE = ("boxname", "name", "exposure", "height", "sensortype", "sensorid")
NAME = ("boxname", "stationname", "name")
# How many data rows are looked at to find a time column by its values.
TIME_SAMPLE_ROWS = 50
# An ISO 8601 date or date-time as exports write it: 2019-01-01, 2019-01-01T00:00:00.000Z, 2019-01-01 00:00:00+00:00.
TIME_VALUE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$",
                        re.IGNORECASE)
# pandas' default index, written by to_csv without a name (or read back and written again as "Unnamed: 0").
UNNAMED = re.compile(r"^(unnamed:?\s*\d+)?$", re.IGNORECASE)


class ReplayError(ValueError):
    """A file the replay cannot read; the message names the file, row and column."""


class Measurement(NamedTuple):
    """Sort key first: event time, then station, then source row (stable order for equal instants)."""

    ts_ms: int
    station_id: str
    row: int
    lat: float  # NaN when the row has no coordinates
    lon: float
    metric: str
    value: float


@dataclass
class ReadStats:
    rows: int = 0  # data rows read
    values: int = 0  # measurements produced
    empty: int = 0  # values skipped because the cell was empty
    unmapped: int = 0  # values skipped because their phenomenon/unit has no metric
    rows_with_values: set[int] = field(default_factory=set, repr=False)
    layout: str = ""
    time_column: str = ""  # the header of the column times were read from
    ignored_columns: list[str] = field(default_factory=list)
    # Station id -> its name (boxName) in the file's row with the latest event time that had values.
    station_names: dict[str, str] = field(default_factory=dict)
    name_at: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)  # station -> (ts_ms, row)


def norm(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.casefold())


def looks_like_time(text: str) -> bool:
    text = text.strip()
    if not TIME_VALUE.match(text):
        return False
    try:
        parse_ts(text)
    except ValueError:
        return False
    return True


def parse_ts(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    # A time without a zone is taken as UTC (openSenseMap always writes Z; spreadsheets often drop it).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Table:
    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        self.time_col: int | None = None
        self.name_col: int | None = None
        self.index = {}
        for i, name in enumerate(header):
            self.index.setdefault(norm(name), i)

    def find(self, aliases: tuple[str, ...]) -> int | None:
        for alias in aliases:
            if alias in self.index:
                return self.index[alias]
        return None

    def fail(self, row: int, column: int | None, problem: str) -> ReplayError:
        where = f", column {self.header[column]!r}" if column is not None else ""
        return ReplayError(f"{self.path}: row {row}{where}: {problem}")


def _sniff_delimiter(first_line: str) -> str:
    # openSenseMap exports take delimiter=comma|semicolon; a header line decides which one this file uses.
    return ";" if first_line.count(";") > first_line.count(",") else ","


class CsvSource:
    """Iterates a replay file's measurements (file order); ``stats`` fills in as it goes."""

    def __init__(self, path: str | Path, registry: Registry, mapper: PhenomenonMapper,
                 phenomenon: str | None = None, unit: str | None = None, time_column: str | None = None) -> None:
        self.path = Path(path)
        self.registry, self.mapper = registry, mapper
        self.phenomenon, self.unit = phenomenon, unit
        self.time_column = time_column
        self.stats = ReadStats()

    def _open(self) -> TextIO:
        try:
            # utf-8-sig: spreadsheet exports often start with a byte-order mark that would rename the first column.
            return self.path.open(encoding="utf-8-sig", newline="")
        except OSError as exc:
            raise ReplayError(f"cannot read {self.path}: {exc.strerror}") from None

    def __iter__(self) -> Iterator[Measurement]:
        with self._open() as handle:
            try:
                first = handle.readline()
            except UnicodeDecodeError as exc:
                raise ReplayError(f"{self.path}: row 1: not UTF-8 text ({exc.reason})") from None
            if not first.strip():
                raise ReplayError(f"{self.path}: row 1: the file is empty; expected a header row")
            delimiter = _sniff_delimiter(first)
            header = next(csv.reader([first], delimiter=delimiter))
            table = _Table(self.path, header)
            reader = csv.reader(handle, delimiter=delimiter)
            rows = self._rows(reader, table)
            # The first rows are read ahead: a time column without a known name is recognised by its values.
            sample = list(itertools.islice(rows, TIME_SAMPLE_ROWS))
            layout = self._layout(table, sample)
            rows = itertools.chain(sample, rows)
            if layout == "long":
                yield from self._long(table, rows)
            else:
                yield from self._wide(table, rows)

    def _rows(self, reader: Iterator[list[str]], table: _Table) -> Iterator[tuple[int, list[str]]]:
        row = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                raise table.fail(row + 1, None, f"not UTF-8 text ({exc.reason})") from None
            except csv.Error as exc:
                raise table.fail(row + 1, None, f"malformed CSV ({exc})") from None
            row += 1
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            if len(cells) > len(table.header):
                raise table.fail(row, None, f"{len(cells)} cells but the header has {len(table.header)} columns")
            cells += [""] * (len(table.header) - len(cells))
            self.stats.rows += 1
            yield row, cells

    def _layout(self, table: _Table, sample: list[tuple[int, list[str]]]) -> str:
        value = table.find(VALUE)
        stat = next((i for i, name in enumerate(table.header) if STAT_VALUE.match(name.strip())), None)
        has_value = value is not None or stat is not None
        if has_value and (table.find(PHENOMENON) is not None or self.phenomenon):
            self.stats.layout = "long"
        elif has_value:
            raise ReplayError(f"{self.path}: row 1: a value column but no 'phenomenon' column; pass --phenomenon "
                              "(e.g. --phenomenon PM10) or export with columns=phenomenon,unit")
        else:
            self.stats.layout = "wide"
        table.time_col = self._time_column(table, sample)
        self.stats.time_column = table.header[table.time_col]
        table.name_col = table.find(NAME)
        if table.find(STATION) is None and table.find(SENSOR) is None:
            raise ReplayError(f"{self.path}: row 1: no station column; expected station_id or boxId "
                              f"(openSenseMap: add columns=boxId) (header: {','.join(table.header)})")
        return self.stats.layout

    def _time_column(self, table: _Table, sample: list[tuple[int, list[str]]]) -> int:
        header = ",".join(table.header)
        if self.time_column is not None:
            wanted = self.time_column.strip()
            # The exact header first (two columns may differ only in case or punctuation), else as names match.
            col = next((i for i, name in enumerate(table.header) if name.strip() == wanted), None)
            if col is None and norm(wanted):
                col = table.index.get(norm(wanted))
            if col is None:
                raise ReplayError(f"{self.path}: row 1: --time-column {self.time_column!r} is not a column "
                                  f"(header: {header})")
            return col
        named = table.find(TIME)
        if named is not None:
            return named
        candidates = []
        for i in range(len(table.header)):
            values = [cells[i] for _, cells in sample if cells[i].strip()]
            if values and all(looks_like_time(value) for value in values):
                candidates.append(i)
        if len(candidates) == 1:
            log.info("%s: time column %r (recognised by its values)", self.path, table.header[candidates[0]])
            return candidates[0]
        expected = "no time column; expected one of ts, timestamp, time, time_start, createdAt"
        if candidates:
            names = [repr(table.header[i]) for i in candidates]
            listed = ", ".join(names[:-1]) + " and " + names[-1]
            raise ReplayError(f"{self.path}: row 1: {expected}; {listed} {'both' if len(names) == 2 else 'all'} "
                              f"hold times; name one with --time-column (header: {header})")
        raise ReplayError(f"{self.path}: row 1: {expected} or a column of ISO 8601 times; name it with "
                          f"--time-column (header: {header})")

    def _common(self, table: _Table, row: int, cells: list[str]) -> tuple[int, str, float, float]:
        station_col = table.find(STATION)
        if station_col is None or not cells[station_col].strip():
            # Without boxId, openSenseMap's export only identifies the sensor; it then stands for the station.
            station_col = table.find(SENSOR) if table.find(SENSOR) is not None else station_col
        assert station_col is not None
        station = cells[station_col].strip()
        if not re.fullmatch(STATION_ID_PATTERN, station):
            raise table.fail(row, station_col, f"station id {station!r} must match [A-Za-z0-9._-]{{1,64}}")
        time_col = table.time_col
        assert time_col is not None
        try:
            ts = parse_ts(cells[time_col])
        except ValueError:
            raise table.fail(row, time_col, f"{cells[time_col]!r} is not an RFC 3339 / ISO 8601 time") from None
        lat = self._coordinate(table, row, cells, table.find(LAT), 90.0)
        lon = self._coordinate(table, row, cells, table.find(LON), 180.0)
        ts_ms = int(ts.timestamp() * 1000)
        if table.name_col is not None and cells[table.name_col].strip():
            self._note_name(station, ts_ms, row, cells[table.name_col].strip())
        return ts_ms, station, lat, lon

    def _note_name(self, station: str, ts_ms: int, row: int, name: str) -> None:
        # Like its location, a station's name is the one of its latest row in event time.
        seen = self.stats.name_at.get(station)
        if seen is None or (ts_ms, row) >= seen:
            self.stats.station_names[station] = name
            self.stats.name_at[station] = (ts_ms, row)

    @staticmethod
    def _coordinate(table: _Table, row: int, cells: list[str], col: int | None, limit: float) -> float:
        if col is None or not cells[col].strip():
            return math.nan
        try:
            value = float(cells[col])
        except ValueError:
            raise table.fail(row, col, f"{cells[col]!r} is not a number") from None
        if not -limit <= value <= limit:
            raise table.fail(row, col, f"{value} is outside ±{limit:g} degrees")
        return value

    @staticmethod
    def _number(table: _Table, row: int, col: int, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise table.fail(row, col, f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise table.fail(row, col, f"{text!r} is not a finite number")
        return value

    def _long(self, table: _Table, rows: Iterator[tuple[int, list[str]]]) -> Iterator[Measurement]:
        value_col = table.find(VALUE)
        if value_col is None:
            value_col = next(i for i, name in enumerate(table.header) if STAT_VALUE.match(name.strip()))
        phen_col, unit_col = table.find(PHENOMENON), table.find(UNIT)
        for row, cells in rows:
            text = cells[value_col].strip()
            if not text:
                self.stats.empty += 1
                continue
            ts_ms, station, lat, lon = self._common(table, row, cells)
            value = self._number(table, row, value_col, text)
            title = cells[phen_col].strip() if phen_col is not None and cells[phen_col].strip() else self.phenomenon
            unit = cells[unit_col].strip() if unit_col is not None and cells[unit_col].strip() else self.unit
            conversion = self.mapper.resolve(title or "", unit)
            if conversion is None:
                self.stats.unmapped += 1
                continue
            self.stats.values += 1
            self.stats.rows_with_values.add(row)
            yield Measurement(ts_ms, station, row, lat, lon, conversion.metric, conversion.apply(value))

    def _wide(self, table: _Table, rows: Iterator[tuple[int, list[str]]]) -> Iterator[Measurement]:
        reserved = {i for i in (table.find(STATION), table.find(SENSOR), table.time_col, table.find(LAT),
                                table.find(LON)) if i is not None}
        metrics: list[tuple[int, str]] = []
        for i, name in enumerate(table.header):
            if i in reserved or UNNAMED.match(name.strip()):
                continue
            metric = self.registry.resolve(name.strip()) or self.registry.resolve(norm(name))
            resolved = metric.name if metric else self.mapper.metric_for_title(name)
            if resolved:
                metrics.append((i, resolved))
            elif norm(name) not in DESCRIPTIVE:
                self.stats.ignored_columns.append(name)
        if self.stats.ignored_columns:
            log.warning("%s: ignoring columns that are not registry metrics: %s", self.path,
                        ", ".join(self.stats.ignored_columns))
        if not metrics:
            raise ReplayError(f"{self.path}: row 1: no metric columns; expected registry metric names such as "
                              f"{', '.join(self.registry.names()[:4])} (header: {','.join(table.header)})")
        for row, cells in rows:
            values = [(col, metric, cells[col].strip()) for col, metric in metrics]
            present = [(col, metric, text) for col, metric, text in values if text]
            self.stats.empty += len(values) - len(present)
            if not present:
                continue
            ts_ms, station, lat, lon = self._common(table, row, cells)
            for col, metric, text in present:
                self.stats.values += 1
                yield Measurement(ts_ms, station, row, lat, lon, metric, self._number(table, row, col, text))
            self.stats.rows_with_values.add(row)
