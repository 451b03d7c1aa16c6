"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import time

from confluent_kafka.admin import AdminClient
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from citysense_alert_api.models import Health
from citysense_alert_api.settings import ApiSettings
from citysense_alert_api.store_calls import StoreCalls, StoreTimeout

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and serving (no dependency checks: restart only helps when this fails)."""
    return Health(status="ok")


class BrokerProbe:
    """Asks the broker for metadata, at most every few seconds (readiness is polled often)."""

    def __init__(self, settings: ApiSettings, cache_s: float = 3.0) -> None:
        self._settings = settings
        self._cache_s = cache_s
        self._checked_at = 0.0
        self._result = "unchecked"
        self._admin: AdminClient | None = None

    def _probe(self) -> str:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self._settings.bootstrap, **self._settings.kafka_options})
        try:
            self._admin.list_topics(timeout=self._settings.readiness_timeout_s)
            return "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"unreachable: {type(exc).__name__}"

    async def check(self) -> str:
        if time.monotonic() - self._checked_at > self._cache_s:
            self._result = await asyncio.to_thread(self._probe)
            self._checked_at = time.monotonic()
        return self._result


@router.get("/readyz", response_model=Health, responses={503: {"model": Health, "description": "not ready"}})
async def readyz(request: Request) -> Response:
    """Ready when the store and the Kafka broker answer, the store within its time limits."""
    checks: dict[str, str] = {}
    calls: StoreCalls = request.app.state.store_calls
    settings: ApiSettings = request.app.state.settings
    stuck_s = calls.longest_running_s()
    try:
        if stuck_s > settings.api_store_timeout_s:
            checks["store"] = f"slow: a store call has been running for {stuck_s:.1f} s"
        else:
            await calls.run(calls.store.ping, timeout_s=settings.readiness_timeout_s)
            checks["store"] = "ok"
    except StoreTimeout:
        checks["store"] = f"slow: no answer within {settings.readiness_timeout_s:g} s"
    except Exception as exc:  # noqa: BLE001
        checks["store"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = await request.app.state.broker_probe.check()
    ok = all(v == "ok" for v in checks.values())
    body = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
