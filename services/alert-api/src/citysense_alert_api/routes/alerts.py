"""Alerts: current state from the store, and a live Server-Sent Events stream of lifecycle events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from citysense_common.contract import AlertEvent, AlertKind, AlertState, Severity
from citysense_common.store import AlertQuery
from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from citysense_alert_api.convert import alert_out
from citysense_alert_api.models import AlertOut, AlertPage
from citysense_alert_api.page_cache import PageCache
from citysense_alert_api.problems import Problem, problem_responses
from citysense_alert_api.routes.deps import (
    CURSOR_REGEX,
    STATION_ID_REGEX,
    CursorsDep,
    SettingsDep,
    StoreDep,
    cursor_guard,
)
from citysense_alert_api.stream import AlertBroadcaster, StreamRefused

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

BBOX_REGEX = r"^\s*-?[0-9.]+\s*,\s*-?[0-9.]+\s*,\s*-?[0-9.]+\s*,\s*-?[0-9.]+\s*$"


def _bbox_problem(reason: str) -> Problem:
    return Problem(422, "Invalid request", f"query.bbox {reason}", type_="urn:citysense:problem:invalid-request",
                   invalid_params=[{"name": "query.bbox", "reason": reason}])


def parse_bbox(raw: str | None) -> tuple[float, float, float, float] | None:
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != 4:
        raise _bbox_problem("must be four numbers: minLon,minLat,maxLon,maxLat")
    try:
        min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
    except ValueError:
        raise _bbox_problem("must be four numbers: minLon,minLat,maxLon,maxLat") from None
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180):
        raise _bbox_problem("longitudes must be between -180 and 180")
    if not (-90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise _bbox_problem("latitudes must be between -90 and 90")
    if min_lon > max_lon or min_lat > max_lat:
        raise _bbox_problem("must be minLon,minLat,maxLon,maxLat with each minimum <= its maximum")
    return min_lon, min_lat, max_lon, max_lat


@dataclass(frozen=True)
class AlertFilters:
    state: Literal["active", "resolved", "all"]
    severity: Severity | None
    kind: AlertKind | None
    station_id: str | None
    bbox: tuple[float, float, float, float] | None

    def matches_event(self, event: AlertEvent) -> bool:
        if self.state == "active" and event.state == AlertState.RESOLVED:
            return False
        if self.state == "resolved" and event.state != AlertState.RESOLVED:
            return False
        if self.severity is not None and event.severity != self.severity:
            return False
        if self.kind is not None and event.kind != self.kind:
            return False
        if self.station_id is not None and event.station_id != self.station_id:
            return False
        if self.bbox is not None:
            if event.location is None:
                return False
            min_lon, min_lat, max_lon, max_lat = self.bbox
            return min_lon <= event.location.lon <= max_lon and min_lat <= event.location.lat <= max_lat
        return True


async def alert_filters(  # async: no threadpool hop (see routes/deps.py)
    state: Annotated[Literal["active", "resolved", "all"], Query(description="lifecycle state")] = "active",
    severity: Annotated[Severity | None, Query(description="exact severity")] = None,
    kind: Annotated[AlertKind | None, Query(description="alert kind")] = None,
    station_id: Annotated[str | None, Query(pattern=STATION_ID_REGEX)] = None,
    bbox: Annotated[str | None, Query(description="minLon,minLat,maxLon,maxLat", max_length=200)] = None,
) -> AlertFilters:
    return AlertFilters(state=state, severity=severity, kind=kind, station_id=station_id, bbox=parse_bbox(bbox))


FiltersDep = Annotated[AlertFilters, Depends(alert_filters)]


@router.get("", response_model=AlertPage, responses=problem_responses(400, 422, 503))
async def list_alerts(
    request: Request,
    filters: FiltersDep,
    store: StoreDep,
    cursors: CursorsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_REGEX)] = None,
) -> Response:
    """Alerts matching the filters, newest first, in pages (``state=active`` by default)."""
    # Served from the page cache while no alert changed (see page_cache.py), as JSON bytes: the response model
    # documents the shape, and FastAPI need not validate our own model a second time.
    pages: PageCache = request.app.state.alert_pages
    key = (filters, limit, cursor)
    body = pages.get(key)
    if body is None:
        ticket = pages.begin()
        scope = ("alerts", filters)
        store_cursor = None if cursor is None else cursors.open(cursor, scope)["s"]
        query = AlertQuery(state=filters.state, severity=filters.severity and filters.severity.value,
                           kind=filters.kind and filters.kind.value, station_id=filters.station_id,
                           bbox=filters.bbox, limit=limit, cursor=store_cursor)
        with cursor_guard():
            page = await store.list_alerts(query)
        next_cursor = None if page.next_cursor is None else cursors.seal(scope, page.next_cursor)
        out = AlertPage(items=[alert_out(a) for a in page.items], next_cursor=next_cursor)
        body = out.model_dump_json().encode()
        pages.put(key, ticket, body)
    return Response(body, media_type="application/json")


def _sse(event: AlertEvent) -> bytes:
    return b"id: " + event.event_id.encode() + b"\nevent: alert\ndata: " + event.to_json() + b"\n\n"


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"description": "Server-Sent Events: `event: alert`, `data:` an alert event (contract v1)",
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}},
               **problem_responses(422, 429, 503)},
)
async def stream_alerts(request: Request, filters: FiltersDep, settings: SettingsDep) -> StreamingResponse:
    """Live alert lifecycle events (open, update, resolved) matching the filters, as they happen.

    ``state=active`` (the default) streams open and update events, ``resolved`` only resolutions, ``all`` both.
    A stream ends after ``CITYSENSE_STREAM_MAX_LIFETIME_S``; EventSource clients reconnect by themselves.
    """
    broadcaster: AlertBroadcaster = request.app.state.broadcaster
    peer = request.client.host if request.client else "unknown"
    try:
        client = broadcaster.subscribe(peer)
    except StreamRefused as refused:
        if refused.per_client:
            raise Problem(429, "Too Many Requests",
                          f"This client already has {refused.limit} live streams open, the most one client may "
                          "have; close one or try again later.", headers={"Retry-After": "10"}) from None
        raise Problem(503, "Service Unavailable", "Too many live streams are open; try again later.",
                      headers={"Retry-After": "10"}) from None
    heartbeat = settings.stream_heartbeat_s
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + settings.stream_max_lifetime_s

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"retry: 3000\n: connected\n\n"
            while True:
                left = ends_at - loop.time()
                if left <= 0:
                    yield b": stream lifetime reached, reconnect\n\n"
                    return
                try:
                    event = await asyncio.wait_for(client.queue.get(), timeout=min(heartbeat, left))
                except TimeoutError:
                    if client.dropped:
                        return
                    if ends_at - loop.time() > 0:
                        yield b": keep-alive\n\n"
                    continue
                if event is None:  # server shutting down
                    return
                if filters.matches_event(event):
                    yield _sse(event)
        finally:
            broadcaster.unsubscribe(client)

    return ReleasingStreamingResponse(events(), on_close=lambda: broadcaster.unsubscribe(client),
                                      media_type="text/event-stream",
                                      headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


class ReleasingStreamingResponse(StreamingResponse):
    """Runs ``on_close`` however the response ends, also when the generator never started (the client left
    before the first byte), where the generator's own ``finally`` does not run."""

    def __init__(self, content: AsyncIterator[bytes], *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


@router.get("/{alert_id}", response_model=AlertOut, responses=problem_responses(404, 422, 503))
async def get_alert(alert_id: Annotated[str, Path(min_length=1, max_length=200)], store: StoreDep) -> AlertOut:
    record = await store.get_alert(alert_id)
    if record is None:
        raise Problem(404, "Alert not found", f"No alert with id {alert_id!r}.",
                      type_="urn:citysense:problem:not-found")
    return alert_out(record)
