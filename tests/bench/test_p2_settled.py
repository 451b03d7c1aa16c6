"""When P2 starts its probes (bench/p2_p3_latency.py: settled) and how it splits the scorer's cycle."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import p2_p3_latency as p2  # noqa: E402


def sawtooth(seconds: int, trough: float, cycle: int, per_s: float, falling: float = 0.0) -> list[tuple[float, float]]:
    """Lag sampled each second: it climbs by ``per_s`` for a cycle and drops back to a trough after each commit;
    the trough falls by ``falling`` per second (a backlog draining)."""
    return [(float(t), max(0.0, trough - falling * t) + per_s * (t % cycle)) for t in range(seconds)]


def test_a_lag_below_two_seconds_of_input_is_caught_up_at_once() -> None:
    assert p2.settled([(0.0, 50_000.0), (1.0, 9_000.0)], 5000) == "caught up"


def test_a_lag_that_keeps_one_cycle_of_input_is_steady_once_its_troughs_stop_falling() -> None:
    # 5,000 stations: the lag after each commit is a cycle of input (6 s x 5,000/s), never below 2 s of input
    samples = sawtooth(60, trough=30_000, cycle=6, per_s=5000)
    assert p2.settled(samples[:30], 5000) is None  # not yet two windows of 20 s
    assert p2.settled(samples, 5000) == "steady"


def test_a_draining_backlog_is_not_steady() -> None:
    samples = sawtooth(60, trough=200_000, cycle=6, per_s=5000, falling=1000)  # troughs fall 20,000 per 20 s
    assert p2.settled(samples, 5000) is None


def test_no_samples_is_not_settled() -> None:
    assert p2.settled([], 5000) is None


def test_a_growing_lag_is_reported_as_falling_behind() -> None:
    samples = sawtooth(60, trough=30_000, cycle=6, per_s=5000, falling=-1000)  # troughs rise 20,000 per 20 s
    assert p2.settled(samples, 5000) == "falling behind"


def scorer_metrics(batches: float, **phase_sums: float) -> dict[str, float]:
    out = {"citysense_scorer_batch_duration_seconds_count": batches}
    out.update({f'citysense_scorer_sink_phase_seconds_sum{{phase="{k}"}}': v for k, v in phase_sums.items()})
    return out


def test_the_cycle_is_split_per_batch_between_two_scrapes() -> None:
    before = scorer_metrics(10, handover=1.0, wal=0.1, prepare=1.0, engine=3.0, alerts=0.2, readings=5.0, stations=2)
    after = scorer_metrics(30, handover=3.0, wal=0.3, prepare=3.0, engine=9.0, alerts=0.6, readings=13.0, stations=6)
    got = p2.cycle_breakdown(before, after, seconds=40.0)
    assert got is not None
    assert (got["batches"], got["cycle_s"]) == (20, 2.0)
    assert (got["engine_s"], got["readings_s"], got["handover_s"], got["wal_s"]) == (0.3, 0.4, 0.1, 0.01)
    assert got["spark_s"] == 1.89  # the cycle minus what foreachBatch spent waiting and writing the WAL file
    assert got["to_alert_s"] == 0.42  # prepare + engine + alerts


def test_no_finished_batch_has_no_breakdown() -> None:
    same = scorer_metrics(5, engine=1.0)
    assert p2.cycle_breakdown(same, same, seconds=30.0) is None
    assert p2.cycle_breakdown({}, {}, seconds=30.0) is None


def test_the_cycle_is_warm_once_it_stops_falling() -> None:
    assert not p2.warmed_up([])
    assert not p2.warmed_up([1.25])  # one window: nothing to compare with
    assert not p2.warmed_up([1.25, 1.05])  # still falling by more than 10 %
    assert p2.warmed_up([1.25, 1.05, 0.99])  # within 10 % of the window before
    assert p2.warmed_up([0.85, 0.95])  # a longer cycle is not warming up any more either
    assert not p2.warmed_up([1.0, 0.0])  # a window without a finished batch says nothing


def test_waiting_for_warm_up_reads_the_scorers_batch_counter(monkeypatch) -> None:  # noqa: ANN001
    counts = iter([0.0, 24.0, 54.0, 87.0, 120.0])  # cycles 1.25, 1.0, 0.91, 0.91 s over 30 s windows
    monkeypatch.setattr(p2.pl, "scrape", lambda port: {"citysense_scorer_batch_duration_seconds_count": next(counts)})
    monkeypatch.setattr(p2.time, "sleep", lambda s: None)
    run = type("Run", (), {"scorer_metrics_port": 1})()
    cycles = p2.wait_warm(run, timeout=1e9)
    assert [round(c, 3) for c in cycles] == [1.25, 1.0, 0.909]


def test_a_big_citys_throughput_window_spans_three_ticks() -> None:
    import p7_scaling

    assert p7_scaling.span_for(30, 1_000, 5000) == 30  # ticks of 0.2 s: the window as asked
    assert p7_scaling.span_for(30, 100_000, 5000) == 60  # one tick every 20 s: three of them
