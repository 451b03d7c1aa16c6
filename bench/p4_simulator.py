"""P4: simulator station-readings per second on one core, beside the original design's way of producing.

Both run in the same invocation, each in its own process pinned to CPU 0 (the broker is pinned to the other core),
producing into a real Kafka broker for the same number of seconds:
- citysense: the vectorised simulator (numpy engine, fixed-layout encoder, batched idempotent producer);
- baseline: the original design — per station and sensor a Python history list and ``np.average`` with rising
  weights, a Python-repr payload (``str(dict)``), one ``produce`` and one ``flush`` per reading.
Counted are readings the broker acknowledged, divided by the process's CPU time (all its threads, librdkafka's
included): what one core does, even when other work shares that core. Wall-clock rates are kept in the details.

    python bench/p4_simulator.py [--seconds 20] [--stations 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Figure, progress, write_result  # noqa: E402

TOPIC = "bench.p4.readings"


def _pin(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


def run_citysense(bootstrap: str, seconds: float, stations: int) -> dict:
    from citysense_simulator.runner import KafkaPublisher, Simulation
    from citysense_simulator.settings import load

    settings = load(kafka_bootstrap=bootstrap, stations=stations, seed=1, readings_topic=TOPIC,
                    simulator_metrics_port=0, instance_id="bench-0")
    sim, publisher = Simulation(settings), KafkaPublisher(settings)
    cpu0 = time.process_time()  # the simulation's set-up (history pre-fill) is not part of the rate
    started, ticks = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:  # as fast as possible: no rate limit
        publisher.publish_batch(sim.step(datetime.now(UTC), ticks))
        publisher.poll()
        ticks += 1
    publisher.close(60)
    elapsed = time.perf_counter() - started
    return {"delivered": publisher.counts.delivered, "failed": publisher.counts.failed, "seconds": elapsed,
            "ticks": ticks, "cpu_seconds": time.process_time() - cpu0}


class _OriginalSensor:
    """The original per-sensor algorithm, written as the original design did (Python lists, one value a call)."""

    def __init__(self, mu: float, sigma: float, low: float, high: float) -> None:
        import numpy as np

        self.np, self.mu, self.sigma, self.low, self.high = np, mu, sigma, low, high
        self.history = [min(max(random.gauss(mu, sigma), low), high)]

    def read(self) -> float:
        weights = self.np.linspace(1.0, 1.5, len(self.history))
        value = float(self.np.average(self.history, weights=weights)) + random.gauss(0, self.sigma)
        if random.random() < 0.2:
            value = self.mu + (value - self.mu) * 0.5
        value = min(max(value, self.low), self.high)
        self.history = (self.history + [value])[-300:]
        return value


def run_baseline(bootstrap: str, seconds: float, stations: int) -> dict:
    from citysense_common.registry import load_registry
    from confluent_kafka import Producer

    metrics = load_registry().profile_metrics("city")
    station_sensors = [
        {m.name: _OriginalSensor(m.profiles["city"].mean, m.profiles["city"].std, m.range.min, m.range.max)
         for m in metrics}
        for _ in range(stations)
    ]
    producer = Producer({"bootstrap.servers": bootstrap})
    delivered = [0]

    def on_delivery(err: object, _msg: object) -> None:
        if err is None:
            delivered[0] += 1

    cpu0 = time.process_time()
    started, produced = time.perf_counter(), 0
    while time.perf_counter() - started < seconds:
        for index, sensors in enumerate(station_sensors):
            payload = {"station_id": f"station-{index}", "timestamp": time.time(),
                       **{name: sensor.read() for name, sensor in sensors.items()}}
            producer.produce(TOPIC, str(payload).encode(), on_delivery=on_delivery)
            producer.flush()
            produced += 1
            if time.perf_counter() - started >= seconds:
                break
    elapsed = time.perf_counter() - started
    return {"delivered": delivered[0], "produced": produced, "seconds": elapsed,
            "cpu_seconds": time.process_time() - cpu0}


def child(role: str, bootstrap: str, seconds: float, stations: int) -> dict:
    cmd = [sys.executable, __file__, "--role", role, "--bootstrap", bootstrap, "--seconds", str(seconds),
           "--stations", str(stations)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds * 10 + 300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stations", type=int, default=20000)
    parser.add_argument("--baseline-stations", type=int, default=50)
    parser.add_argument("--role", choices=["citysense", "baseline"])
    parser.add_argument("--bootstrap")
    args = parser.parse_args()
    if args.role:
        _pin(0)
        run = run_citysense if args.role == "citysense" else run_baseline
        print(json.dumps(run(args.bootstrap, args.seconds, args.stations)))
        return 0

    from citysense_common.kafka import TopicSpec, ensure_topics
    from citysense_localstack.servers.kafka import running_kafka

    with running_kafka() as broker:
        _pin_pid(broker.proc.pid, 1)
        ensure_topics(broker.bootstrap, [TopicSpec(TOPIC, 6)])
        progress(f"P4 citysense simulator: {args.stations} stations, {args.seconds:.0f}s on CPU 0")
        ours = child("citysense", broker.bootstrap, args.seconds, args.stations)
        progress(f"  -> {ours['delivered'] / ours['cpu_seconds']:,.0f} station-readings per CPU-second "
                 f"({ours['delivered'] / ours['seconds']:,.0f}/s wall)")
        progress(f"P4 baseline (original design): {args.baseline_stations} stations, {args.seconds:.0f}s on CPU 0")
        base = child("baseline", broker.bootstrap, args.seconds, args.baseline_stations)
        progress(f"  -> {base['delivered'] / base['cpu_seconds']:,.1f} station-readings per CPU-second "
                 f"({base['delivered'] / base['seconds']:,.1f}/s wall)")
    ours_rate = ours["delivered"] / ours["cpu_seconds"]
    base_rate = base["delivered"] / base["cpu_seconds"]
    ratio = ours_rate / base_rate if base_rate else float("inf")
    figures = [
        Figure("P4", "simulator station-readings/s on one core", ours_rate, "readings/CPU-s", ">= 200,000",
               ours_rate >= 200_000, {"run": ours, "stations": args.stations}),
        Figure("P4", "original-design baseline on one core", base_rate, "readings/CPU-s", "reference", None,
               {"run": base, "stations": args.baseline_stations}),
        Figure("P4", "simulator speed-up over the baseline", ratio, "x", ">= 100x", ratio >= 100),
    ]
    path = write_result("p4_simulator", figures, notes="each side pinned to CPU 0; broker pinned to CPU 1")
    progress(f"P4 ratio {ratio:,.0f}x; wrote {path}")
    return 0


def _pin_pid(pid: int, cpu: int) -> None:
    try:
        os.sched_setaffinity(pid, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
