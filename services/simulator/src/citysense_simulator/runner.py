"""The simulation loop: tick the sensor field on schedule, encode, produce, report progress, shut down cleanly."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
from citysense_common.kafka import producer_config
from confluent_kafka import KafkaError, Producer

from citysense_simulator import scenarios as scenario_mod
from citysense_simulator.encode import FixedLayoutEncoder
from citysense_simulator.engine import EngineParams, SensorField
from citysense_simulator.settings import SimulatorSettings
from citysense_simulator.stations import make_stations, parse_bbox
from citysense_simulator.telemetry import SimulatorTelemetry

log = logging.getLogger("citysense.simulator")

# Falling further behind than this drops ticks rather than sending a burst of stale event times.
MAX_BEHIND_S = 2.0
PROGRESS_EVERY_S = 10.0


class Publisher(Protocol):
    counts: DeliveryCounts

    def publish(self, key: bytes, value: bytes) -> None: ...
    def publish_batch(self, messages: list[tuple[bytes, bytes]]) -> None: ...
    def poll(self) -> None: ...
    def close(self, timeout: float) -> int: ...  # returns messages still undelivered


@dataclass
class DeliveryCounts:
    delivered: int = 0
    failed: int = 0


class KafkaPublisher:
    """Batched, idempotent confluent-kafka producer that counts deliveries.

    Delivery reports come only for failures (``delivery.report.only.error``): a Python callback per successful
    message would cost more than producing it. A message leaves librdkafka's queue exactly when it is
    acknowledged or has failed, so delivered = enqueued - still queued - failed.
    """

    def __init__(self, settings: SimulatorSettings) -> None:
        self.topic = settings.readings_topic
        self.counts = DeliveryCounts()
        self.enqueued = 0
        self._last_error: KafkaError | None = None
        self.producer = Producer(producer_config(settings, on_delivery=self._on_failure,
                                                 **{"delivery.report.only.error": True}))

    def _on_failure(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self.counts.failed += 1
            self._last_error = err

    def publish(self, key: bytes, value: bytes) -> None:
        self.publish_batch([(key, value)])

    def publish_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        produce, topic, done = self.producer.produce, self.topic, 0
        while done < len(messages):
            try:
                for key, value in messages[done:] if done else messages:
                    produce(topic, value, key)
                    done += 1
            except BufferError:
                # Local queue full: serve the broker until there is room (back-pressure, no loss).
                self.producer.poll(0.05)
        self.enqueued += done

    def _update(self) -> None:
        self.counts.delivered = self.enqueued - len(self.producer) - self.counts.failed

    def poll(self) -> None:
        self.producer.poll(0)
        self._update()
        if self._last_error is not None:
            log.warning("delivery failed: %s", self._last_error)
            self._last_error = None

    def close(self, timeout: float) -> int:
        remaining = self.producer.flush(timeout)
        self._update()
        return remaining


class Simulation:
    """Everything one simulator instance simulates, advanced one tick at a time."""

    def __init__(self, settings: SimulatorSettings) -> None:
        registry = settings.registry()
        metrics = registry.profile_metrics(settings.profile)
        self.settings = settings
        self.names = [m.name for m in metrics]
        self.stations = make_stations(settings.stations, settings.instance_id, settings.station_prefix,
                                      parse_bbox(settings.bbox))
        rng = np.random.default_rng(settings.seed)
        params = EngineParams(settings.history, settings.recalibration_rate, settings.recalibration_strength,
                              settings.outlier_probability, settings.outlier_sigma)
        self.field = SensorField(metrics, settings.profile, len(self.stations), params, rng)
        self.encoder = FixedLayoutEncoder(self.stations, self.names, self.field.lo, self.field.hi)
        self.scenarios = [scenario_mod.parse_scenario(spec, len(self.stations)) for spec in settings.scenarios]
        self.seqs = np.zeros(len(self.stations), dtype=np.int64)
        self.rng = rng

    def step(self, ts: datetime, elapsed: float) -> list[tuple[bytes, bytes]]:
        values = self.field.tick()
        f = self.field
        sending = scenario_mod.apply(self.scenarios, values, self.names, elapsed, f.lo, f.hi, f.sigma, self.rng)
        messages = self.encoder.encode(ts, self.seqs, values, sending)
        self.seqs[sending] += 1
        return messages


def run(settings: SimulatorSettings, stop: threading.Event, publisher: Publisher | None = None,
        telemetry: SimulatorTelemetry | None = None, duration: float | None = None) -> DeliveryCounts:
    """Run until ``stop`` is set (or ``duration`` seconds pass); flush before returning."""
    sim = Simulation(settings)
    telemetry = telemetry or SimulatorTelemetry()
    telemetry.stations.set(len(sim.stations))
    publisher = publisher or KafkaPublisher(settings)
    interval = 1.0 / settings.rate_hz
    started = time.time()
    next_tick, sent, last_report, last_sent = started, 0, started, 0
    log.info("simulating %d stations x %d metrics at %.3g Hz (profile %s) -> %s",
             len(sim.stations), len(sim.names), settings.rate_hz, settings.profile, settings.readings_topic)
    while not stop.is_set():
        now = time.time()
        if duration is not None and now - started >= duration:
            break
        if now < next_tick:
            stop.wait(next_tick - now)
            continue
        if now - next_tick > MAX_BEHIND_S:
            log.warning("%.1fs behind schedule; skipping ticks (too many stations for one core?)", now - next_tick)
            next_tick = now
        telemetry.behind.set(max(0.0, now - next_tick))
        messages = sim.step(datetime.fromtimestamp(next_tick, UTC), next_tick - started)
        publisher.publish_batch(messages)
        sent += len(messages)
        publisher.poll()
        next_tick += interval
        if now - last_report >= PROGRESS_EVERY_S:
            log.info("sent %d readings (%.0f/s)", sent, (sent - last_sent) / (now - last_report))
            last_report, last_sent = now, sent
        _sync_counters(publisher, telemetry)
    pending = publisher.close(30.0)
    _sync_counters(publisher, telemetry)
    log.info("stopped after %d readings; %s undelivered at shutdown; %s", sent, pending, publisher.counts)
    return publisher.counts


def _sync_counters(publisher: Publisher, telemetry: SimulatorTelemetry) -> None:
    counts = publisher.counts
    delivered = counts.delivered - telemetry.produced._value.get()  # noqa: SLF001 - counters only go up
    failed = counts.failed - telemetry.delivery_errors._value.get()  # noqa: SLF001
    if delivered > 0:
        telemetry.produced.inc(delivered)
    if failed > 0:
        telemetry.delivery_errors.inc(failed)
