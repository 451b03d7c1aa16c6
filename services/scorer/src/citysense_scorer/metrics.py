"""Prometheus metrics of the scorer (served on ``CITYSENSE_SCORER_METRICS_PORT``, default 9464)."""

from __future__ import annotations

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


def serve(port: int) -> None:
    if port:
        start_http_server(port)
