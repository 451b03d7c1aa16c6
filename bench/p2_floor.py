"""P2 floor: how fast the mandated parts alone hand a reading to the scorer, with no scoring at all.

The real local Kafka broker, the scorer's own Spark session and source frame (Spark's Kafka source, decode and
validation included), micro-batches back to back, and a ``foreachBatch`` that only collects each reading's ``ts``
(stamped when it was produced) and notes when the batch reached the driver. No health operator, no engine, no store,
no API. What this gives is a lower bound for P2 on this machine: an alert cannot be readable before the reading that
raised it reached the scorer's sink.

    python bench/p2_floor.py [--rate 5000] [--stations 5000] [--seconds 40]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pipeline as pl  # noqa: E402
from harness import Figure, progress, write_result  # noqa: E402

TOPIC = "citysense.readings"
PARTITIONS = 6  # as the stack creates the readings topic (citysense_common.kafka.default_topics)


def latencies_ms(ts_us: np.ndarray, arrived_ms: float) -> np.ndarray:
    """Reading -> sink latency of one batch: ``arrived_ms`` minus each reading's ``ts`` (µs; NaN rows dropped)."""
    ts = ts_us[~np.isnan(ts_us)]
    return arrived_ms - ts / 1000.0


def produce(bootstrap: str, rate: int, stations: int, stop: threading.Event, tick_s: float = 0.1) -> None:
    """Readings at ``rate``/s in ticks of ``tick_s`` (the stations take turns), each stamped with its produce time."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    per_tick, i, seq, due = max(1, round(rate * tick_s)), 0, 0, time.monotonic()
    while not stop.is_set():
        for _ in range(per_tick):
            station = f"floor-{i % stations:06d}"
            i += 1
            producer.produce(TOPIC, key=station.encode(),
                             value=pl.reading_bytes(station, seq, datetime.now(UTC), 10.0))
        seq += 1
        producer.poll(0)
        due += tick_s
        time.sleep(max(0.0, due - time.monotonic()))
    producer.flush(10)


def measure(rate: int, stations: int, seconds: float, warmup: float) -> dict:
    """One broker and one Spark session; ``warmup`` s of load unrecorded, then ``seconds`` recorded."""
    from citysense_common.kafka import TopicSpec, ensure_topics
    from citysense_localstack.servers.kafka import running_kafka
    from citysense_scorer.alerts.realtime.jar import scorer_jars
    from citysense_scorer.job.session import build_session
    from citysense_scorer.settings import scorer_settings
    from citysense_scorer.source.frame import source_frame

    tmp = Path(tempfile.mkdtemp(prefix="citysense-floor-"))
    with running_kafka(log_path=tmp / "broker.log") as broker:
        ensure_topics(broker.bootstrap, [TopicSpec(TOPIC, PARTITIONS)])
        settings = scorer_settings(kafka_bootstrap=broker.bootstrap, data_dir=tmp)
        spark = build_session(settings.scorer_spark_master, shuffle_partitions=1,
                              driver_memory=settings.scorer_driver_memory, jars=scorer_jars())
        record_from = [float("inf")]
        samples: list[np.ndarray] = []
        batches: list[tuple[float, int]] = []

        def sink(df, _batch_id: int) -> None:  # noqa: ANN001 - Spark's DataFrame
            started = time.time()
            table = df.select("ts").toArrow()
            arrived_ms = time.time() * 1000
            if started >= record_from[0] and table.num_rows:
                ts_us = table.column("ts").cast("int64").to_numpy(zero_copy_only=False).astype(float)
                samples.append(latencies_ms(ts_us, arrived_ms))
                batches.append((started, table.num_rows))

        query = (source_frame(spark, settings, settings.registry()).writeStream.foreachBatch(sink)
                 .option("checkpointLocation", str(tmp / "checkpoint")).start())
        stop = threading.Event()
        load = threading.Thread(target=produce, args=(broker.bootstrap, rate, stations, stop), daemon=True)
        try:
            time.sleep(10)  # the first micro-batches start the Python workers
            load.start()
            progress(f"  {warmup:.0f} s warm-up, then {seconds:.0f} s recorded")
            time.sleep(warmup)
            record_from[0] = time.time()
            time.sleep(seconds)
        finally:
            stop.set()
            load.join(15)
            with contextlib.suppress(Exception):  # let the last batch finish: stopping mid-batch cancels its job
                query.processAllAvailable()
            query.stop()
            spark.stop()
    values = np.concatenate(samples) if samples else np.array([])
    starts = [b[0] for b in batches]
    return {"readings": int(values.size),
            "p50_ms": float(np.percentile(values, 50)) if values.size else None,
            "p99_ms": float(np.percentile(values, 99)) if values.size else None,
            "max_ms": float(values.max()) if values.size else None,
            "cycle_s": float(np.mean(np.diff(starts))) if len(starts) > 1 else None,
            "readings_per_s": sum(b[1] for b in batches) / seconds}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--stations", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--warmup", type=float, default=20)
    args = ap.parse_args(argv)
    progress(f"P2 floor: broker -> Kafka source -> foreachBatch at {args.rate:,}/s, no scoring")
    figures = []
    run = measure(args.rate, args.stations, args.seconds, args.warmup)
    progress(f"  p50 {run['p50_ms']:.0f} ms, p99 {run['p99_ms']:.0f} ms, cycle {run['cycle_s']:.2f} s")
    for q in ("p50", "p99"):
        figures.append(Figure("P2", f"floor: reading -> scorer sink, no scoring, {q}", run[f"{q}_ms"], "ms",
                              "reference (P2 target 500 ms p99)", None, run))
    path = write_result("p2_floor", figures, notes=pl.run_note())
    progress(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
