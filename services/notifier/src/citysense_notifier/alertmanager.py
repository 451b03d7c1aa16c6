"""Optional second sink: push alerts to a Prometheus Alertmanager through its API v2 (``POST /api/v2/alerts``).

Alertmanager de-duplicates by label set, so resending is harmless; a resolved event sets ``endsAt``.
"""

from __future__ import annotations

import asyncio
import logging
import random

import httpx
from citysense_common.contract import AlertEvent, AlertState, format_ts

from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.settings import NotifierSettings

log = logging.getLogger("citysense.notifier.alertmanager")


def to_alertmanager(event: AlertEvent) -> dict[str, object]:
    labels = {"alertname": event.rule_id, "station_id": event.station_id, "severity": event.severity.value,
              "kind": event.kind.value, "alert_id": event.alert_id, "source": "citysense"}
    if event.metric:
        labels["metric"] = event.metric
    annotations = {"summary": event.message}
    if event.value is not None:
        annotations["value"] = str(event.value)
    if event.threshold is not None:
        annotations["threshold"] = str(event.threshold)
    alert: dict[str, object] = {"labels": labels, "annotations": annotations, "startsAt": format_ts(event.opened_at)}
    if event.state == AlertState.RESOLVED:
        alert["endsAt"] = format_ts(event.resolved_at or event.event_time)
    return alert


class AlertmanagerSink:
    def __init__(self, settings: NotifierSettings, client: httpx.AsyncClient, metrics: NotifierMetrics) -> None:
        assert settings.alertmanager_url
        self.url = settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
        self.timeout = settings.alertmanager_timeout_s
        self.max_attempts = settings.alertmanager_max_attempts
        self.client = client
        self.metrics = metrics

    async def push(self, event: AlertEvent) -> None:
        """Best effort with a few retries: the webhook log, not Alertmanager, is the record of delivery."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = await self.client.post(self.url, json=[to_alertmanager(event)], timeout=self.timeout)
                if response.status_code < 300:
                    self.metrics.alertmanager.labels("ok").inc()
                    return
                error = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.metrics.alertmanager.labels("error").inc()
            log.warning("Alertmanager push of %s failed (attempt %d): %s", event.event_id, attempt, error)
            await asyncio.sleep(min(30.0, 0.5 * 2 ** attempt) * random.uniform(0.5, 1.0))
        self.metrics.alertmanager.labels("gave_up").inc()
