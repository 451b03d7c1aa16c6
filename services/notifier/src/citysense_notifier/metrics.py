"""Prometheus metrics of the notifier (served on CITYSENSE_NOTIFIER_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifierMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("citysense_notifier_events_total", "events consumed", ["topic", "outcome"], registry=r)
        self.attempts = Counter("citysense_notifier_webhook_attempts_total", "HTTP attempts", ["result"], registry=r)
        self.delivered = Counter("citysense_notifier_webhook_delivered_total", "deliveries that succeeded",
                                 registry=r)
        self.dead = Counter("citysense_notifier_webhook_dead_letters_total", "deliveries given up", ["reason"],
                            registry=r)
        self.latency = Histogram("citysense_notifier_delivery_seconds", "event time -> webhook acknowledged",
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=r)
        self.in_flight = Gauge("citysense_notifier_events_in_flight", "new events with first attempts pending",
                               registry=r)
        self.parked = Counter("citysense_notifier_webhook_parked_total",
                              "deliveries handed to the retry lane (failed, or their subscriber busy)", registry=r)
        self.parked_in_flight = Gauge("citysense_notifier_parked_in_flight", "parked deliveries being retried",
                                      registry=r)
        self.alertmanager = Counter("citysense_notifier_alertmanager_total", "Alertmanager pushes", ["result"],
                                    registry=r)
        self.mqtt_published = Counter("citysense_notifier_mqtt_published_total",
                                      "MQTT messages the broker acknowledged (QoS 1)", ["topic"], registry=r)
        self.mqtt_dropped = Counter("citysense_notifier_mqtt_dropped_total",
                                    "MQTT messages given up (queue_full, rejected, shutdown)", ["topic", "reason"],
                                    registry=r)
        self.mqtt_skipped = Counter("citysense_notifier_mqtt_skipped_total",
                                    "alert events with nothing (not_public) or no area topic (no_location) on MQTT",
                                    ["reason"], registry=r)
        self.mqtt_queued = Gauge("citysense_notifier_mqtt_queued",
                                 "MQTT messages waiting for the broker or its acknowledgement", registry=r)
        self.mqtt_connected = Gauge("citysense_notifier_mqtt_connected", "1 while connected to the MQTT broker",
                                    registry=r)
        self.mqtt_connect_failures = Counter("citysense_notifier_mqtt_connect_failures_total",
                                             "MQTT connection attempts that failed or were refused", registry=r)
        self.email_attempts = Counter("citysense_notifier_email_attempts_total", "SMTP attempts", ["result"],
                                      registry=r)
        self.email_sent = Counter("citysense_notifier_email_sent_total", "emails the SMTP server accepted",
                                  ["type"], registry=r)
        self.email_dead = Counter("citysense_notifier_email_dead_letters_total", "emails given up", ["reason"],
                                  registry=r)
        self.email_parked = Counter("citysense_notifier_email_parked_total",
                                    "emails handed to the retry lane (failed, or the server backing off)", registry=r)
        self.email_skipped = Counter("citysense_notifier_email_skipped_total",
                                     "alert events with no email: not_public, no_location, no_texts", ["reason"],
                                     registry=r)
        self.email_latency = Histogram("citysense_notifier_email_seconds", "event time -> email accepted by SMTP",
                                       buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300), registry=r)
