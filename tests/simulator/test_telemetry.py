"""The simulator's Prometheus endpoint serves its counters over real HTTP."""

from __future__ import annotations

import threading
import urllib.request

from citysense_localstack.servers.net import free_port
from citysense_simulator import runner
from citysense_simulator.settings import load
from citysense_simulator.telemetry import SimulatorTelemetry


class ListPublisher:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.counts = runner.DeliveryCounts()

    def publish(self, key: bytes, value: bytes) -> None:
        self.publish_batch([(key, value)])

    def publish_batch(self, messages: list[tuple[bytes, bytes]]) -> None:
        self.messages.extend(messages)
        self.counts.delivered += len(messages)

    def poll(self) -> None:
        pass

    def close(self, timeout: float) -> int:
        return 0


def test_metrics_endpoint_reports_produced_readings_and_stations() -> None:
    port = free_port()
    telemetry = SimulatorTelemetry()
    telemetry.serve(port)
    publisher = ListPublisher()
    runner.run(load(stations=7, rate_hz=20, seed=2, simulator_metrics_port=0), threading.Event(), publisher, telemetry,
               duration=0.5)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # noqa: S310
    samples = dict(line.rsplit(" ", 1) for line in body.splitlines() if line and not line.startswith("#"))
    produced = float(samples["citysense_simulator_readings_produced_total"])
    assert produced == len(publisher.messages) > 0
    assert "citysense_simulator_stations 7.0" in body
    assert "citysense_simulator_delivery_errors_total 0.0" in body
