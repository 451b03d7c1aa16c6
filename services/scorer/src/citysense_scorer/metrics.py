"""Prometheus metrics of the scorer (served on ``CITYSENSE_SCORER_METRICS_PORT``, default 9464)."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

BATCHES = Counter("citysense_scorer_batches_total", "micro-batches processed", ["outcome"])
ROWS = Counter("citysense_scorer_rows_total", "input messages by result", ["result"])  # valid | dead_letter | late
DEAD_LETTERS = Counter("citysense_scorer_dead_letters_total", "dead-lettered messages by reason", ["reason"])
DEAD_LETTERS_UNDELIVERED = Counter("citysense_scorer_dead_letters_undelivered_total",
                                   "dead letters Kafka refused for good (logged, not retried)", ["cause"])
ALERT_EVENTS = Counter("citysense_scorer_alert_events_total", "alert events produced", ["state", "severity"])
BATCH_SECONDS = Histogram("citysense_scorer_batch_duration_seconds", "foreachBatch wall time",
                          buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60))
LAG = Gauge("citysense_scorer_consumer_lag_messages",
            "messages on the readings topic not yet processed (partition ends now - end of the last finished batch)")
TRIGGER_PHASE = Gauge("citysense_scorer_trigger_phase_seconds", "wall time of the last micro-batch by phase "
                      "(Spark's durationMs: triggerExecution = whole batch, addBatch = query + sink, walCommit, ...)",
                      ["phase"])
WATERMARK = Gauge("citysense_scorer_watermark_seconds", "event-time watermark (unix seconds)")
REPLAYED = Counter("citysense_scorer_replayed_batches_total", "batches re-run after a restart")
REALTIME_RESTARTS = Counter("citysense_scorer_realtime_restarts_total",
                            "times the real-time alert query stopped and was restarted from its checkpoint")

SINK_PHASE = Histogram(
    "citysense_scorer_sink_phase_seconds",
    "wall time of each micro-batch's sink by phase: handover (foreachBatch waiting for the previous batch's sink), "
    "wal (write-ahead file), prepare (Arrow to scored rows), engine, alerts (stored and on Kafka: what an alert's "
    "latency waits for), readings, stations",
    ["phase"], buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))


class Laps:
    """Observes the time since the previous lap (or creation) under a phase of ``SINK_PHASE``."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def lap(self, phase: str) -> None:
        now = time.monotonic()
        SINK_PHASE.labels(phase).observe(now - self._last)
        self._last = now


def serve(port: int) -> None:
    if port:
        start_http_server(port)
