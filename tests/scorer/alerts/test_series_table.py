"""SeriesTable: the ring of 60 buckets per station, driven directly (one call = one slice)."""

from __future__ import annotations

import numpy as np
import pytest
from citysense_scorer.alerts.series_table import SeriesTable


def add(table: SeriesTable, rows: list[int], ts_s: list[int], values: list[float]) -> None:
    """One reading per (row, second); a 1-minute window has 1 s buckets."""
    ts = np.array(ts_s, dtype=np.int64) * 1000
    v = np.array(values, dtype=np.float64)
    table.add(np.array(rows, dtype=np.int64), ts // table.width_ms, v, np.ones(len(v), dtype=np.int64), v, ts, ts, v)


@pytest.fixture
def table() -> SeriesTable:
    t = SeriesTable.create(60_000, keep_max=True)
    t.reserve(2)
    add(t, [0] * 60, list(range(60)), [100.0] * 60)  # row 0: seconds 0..59 at 100
    return t


def test_a_reading_one_window_older_than_the_newest_in_the_same_slice_is_dropped(table: SeriesTable) -> None:
    add(table, [0, 0], [0 + 1, 61], [1000.0, 10.0])  # second 1 is outside the window that ends at second 61
    assert table.aggregate("mean", np.array([0]))[0] == pytest.approx((58 * 100 + 10) / 59)
    assert table.aggregate("max", np.array([0]))[0] == 100.0


def test_rows_are_independent_and_an_untouched_row_has_no_value(table: SeriesTable) -> None:
    assert np.isnan(table.aggregate("mean", np.array([1]))[0])
    assert not table.has_data(np.array([1]))[0]
    add(table, [1], [500], [7.0])
    assert table.aggregate("mean", np.array([0, 1])).tolist() == [100.0, 7.0]


def test_the_latest_value_and_ties_on_time(table: SeriesTable) -> None:
    add(table, [0], [59], [5.0])  # same second as the newest: the later arrival is the latest value
    assert table.aggregate("value", np.array([0]))[0] == 5.0
    add(table, [0], [30], [9.0])  # older: counted in its bucket, but not the latest value
    assert table.aggregate("value", np.array([0]))[0] == 5.0
    assert table.aggregate("max", np.array([0]))[0] == 100.0


def test_the_ring_advances_and_clears_what_it_passes(table: SeriesTable) -> None:
    add(table, [0], [89], [10.0])  # 30 s on: seconds 30..59 still hold 100, 60..88 are empty
    assert table.aggregate("mean", np.array([0]))[0] == pytest.approx((30 * 100 + 10) / 31)
    add(table, [0], [10_000], [3.0])  # far ahead: everything else left the window
    assert table.aggregate("mean", np.array([0]))[0] == 3.0
    assert table.aggregate("max", np.array([0]))[0] == 3.0


def test_complete_window_needs_data_spanning_it(table: SeriesTable) -> None:
    assert table.complete(np.array([0]), 60_000)[0]  # seconds 0..59: 59 s = window - one bucket
    add(table, [1, 1, 1], [0, 1, 2], [1.0, 1.0, 1.0])
    assert not table.complete(np.array([1]), 60_000)[0]


def test_growing_keeps_what_is_stored(table: SeriesTable) -> None:
    table.reserve(1000)
    assert table.aggregate("mean", np.array([0]))[0] == 100.0
    assert np.isnan(table.aggregate("mean", np.array([999]))[0])
