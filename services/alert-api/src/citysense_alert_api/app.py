"""The FastAPI application: wiring of store, auth, live stream, routes, citizen page and error format."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from citysense_common.contract import AlertEvent
from citysense_common.store import AlertRecord, Store
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.responses import FileResponse, JSONResponse
from swagger_ui_bundle import swagger_ui_path

from citysense_alert_api.auth import TokenChecker
from citysense_alert_api.cursors import CursorSigner
from citysense_alert_api.limits import BodyLimitMiddleware, BodyTooLarge, body_too_large_response
from citysense_alert_api.metrics import ApiMetrics, MetricsMiddleware
from citysense_alert_api.page_cache import PageCache
from citysense_alert_api.problems import (
    ProblemDetails,
    install_problem_handlers,
    problem_response,
    problem_responses,
)
from citysense_alert_api.routes import alerts, cap, citizen_map, ops, stations, subscriptions
from citysense_alert_api.routes import citizen as citizen_routes
from citysense_alert_api.routes.ops import BrokerProbe
from citysense_alert_api.security import SecurityHeadersMiddleware
from citysense_alert_api.settings import ApiSettings
from citysense_alert_api.store_calls import StoreCalls, StoreTimeout
from citysense_alert_api.stream import AlertBroadcaster
from citysense_alert_api.test_requests import TestRequestPublisher

log = logging.getLogger("citysense.alert_api")
STATIC_DIR = resources.files("citysense_alert_api") / "static"

DESCRIPTION = """
Stations, readings and alerts of the citysense environmental-sensing network, live alert streams (SSE) and
signed webhook subscriptions (CloudEvents 1.0 + Standard Webhooks).

Reads are public. Writes and everything under `/v1/subscriptions` need `Authorization: Bearer <token>`.
Errors are RFC 9457 `application/problem+json`.
"""


def _open_store(settings: ApiSettings) -> Store:
    from citysense_common.store.factory import open_store  # the backend is chosen by settings

    return open_store(settings)


def record_alert(app: FastAPI, event: AlertEvent | None) -> None:
    """On the alert reader thread, for every message: store the event's alert, then drop the cached alert pages.

    The scorer's real-time path writes alert events only to Kafka; the notifier records them too, durably, but
    later. Recording here first means a page rebuilt after the drop already holds the change. An upsert keeps each
    alert's newest event, so events the micro-batch sink stored itself change nothing."""
    if event is not None:
        try:
            app.state.store.upsert_alerts([AlertRecord.of(event)])
        except Exception as exc:  # noqa: BLE001 - the store may be down; the notifier records it later
            log.warning("could not record alert event %s: %r", event.event_id, exc)
    app.state.alert_pages.invalidate()


def create_app(settings: ApiSettings, token: str, store: Store | None = None) -> FastAPI:
    """Build the app. ``store`` lets tests inject one; otherwise it is opened from settings at start-up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = store is None
        app.state.store = _open_store(settings) if owned else store  # open_store also migrates
        app.state.store_calls = StoreCalls(app.state.store, settings.api_store_timeout_s)
        app.state.broadcaster.start()
        try:
            yield
        finally:
            app.state.store_calls.shutdown()
            await app.state.broadcaster.stop()
            app.state.test_publisher.close()
            citizen_routes.close(app)
            if owned:
                app.state.store.close()

    app = FastAPI(title="citysense alert API", version="1.0.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.settings = settings
    app.state.token_checker = TokenChecker(token)
    app.state.cursors = CursorSigner(token)
    app.state.alert_pages = PageCache(settings.api_alert_cache_s)
    app.state.broadcaster = AlertBroadcaster(settings, max_clients=settings.stream_max_clients,
                                             max_per_client=settings.stream_max_per_client,
                                             on_message=lambda event: record_alert(app, event))
    app.state.test_publisher = TestRequestPublisher(settings)
    app.state.broker_probe = BrokerProbe(settings)
    app.state.metrics = ApiMetrics()
    # Read when scraped, so the gauge is right however a stream ends (closed, dropped, refused, timed out).
    app.state.metrics.stream_clients.set_function(lambda: app.state.broadcaster.client_count)

    install_problem_handlers(app)

    @app.exception_handler(StoreTimeout)
    async def _store_timeout(request: Request, exc: StoreTimeout) -> JSONResponse:
        log.warning("store too slow on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(request, 503, "Service Unavailable",
                                "The data store is slow to answer right now; try again shortly.",
                                headers={"Retry-After": "5"})

    @app.exception_handler(BodyTooLarge)
    async def _body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return body_too_large_response(request, exc.max_bytes)

    for router in (stations.router, alerts.router, subscriptions.router, citizen_map.router, ops.router):
        app.include_router(router)
    cap.install(app, settings)  # CAP 1.2 feed, configured by config/cap.yaml
    citizen_routes.install(app, settings)  # public area subscriptions (CITYSENSE_CITIZEN_*)

    @app.get("/", include_in_schema=False)
    async def citizen_page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> FileResponse:
        """Swagger UI, served with its assets from this process: users paste the write token into it."""
        return FileResponse(str(STATIC_DIR / "docs.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    origins = [o.strip() for o in settings.api_cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api_max_body_bytes)  # outside routing and auth
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    tile_sources = (settings.map_tile_origin,) if settings.map_tile_origin else ()
    app.add_middleware(SecurityHeadersMiddleware, image_sources=tile_sources)  # outermost: refusals get them too
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["ProblemDetails"] = ProblemDetails.model_json_schema(by_alias=True)
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, ops_ in schema.get("paths", {}).items():
        for method, op in ops_.items():
            # FastAPI documents its own 422 body; ours is problem+json, so replace it everywhere.
            responses = op.get("responses", {})
            if "422" in responses:
                responses["422"] = problem_responses(422)[422]
            if "401" in responses:
                op["security"] = [{"bearer": []}]
            _ = path, method
    schema["components"]["schemas"].pop("HTTPValidationError", None)
    schema["components"]["schemas"].pop("ValidationError", None)
    app.openapi_schema = schema
    return schema
