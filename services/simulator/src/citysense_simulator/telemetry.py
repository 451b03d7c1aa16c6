"""Prometheus metrics of the simulator."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class SimulatorTelemetry:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.produced = Counter("citysense_simulator_readings_produced_total",
                                "readings acknowledged by the broker", registry=self.registry)
        self.delivery_errors = Counter("citysense_simulator_delivery_errors_total",
                                       "readings the broker did not acknowledge", registry=self.registry)
        self.stations = Gauge("citysense_simulator_stations", "stations simulated by this instance",
                              registry=self.registry)
        self.behind = Gauge("citysense_simulator_tick_lag_seconds",
                            "how far the last tick started behind its schedule", registry=self.registry)

    def serve(self, port: int) -> None:
        if port:
            start_http_server(port, addr="0.0.0.0", registry=self.registry)
