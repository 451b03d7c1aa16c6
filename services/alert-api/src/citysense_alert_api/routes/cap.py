"""CAP 1.2: an Atom feed of the current public alerts and each public alert's current CAP message.

Non-public alerts (kinds and severities ``config/cap.yaml`` does not list, such as sensor faults and offline
stations) answer 404 exactly like alerts that do not exist. The feed is built in one store call off the event loop
and kept in the alert page cache, which every alert event empties; both routes answer ``If-None-Match`` with 304.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from citysense_common.contract import AlertKind
from citysense_common.store import AlertQuery, AlertRecord, Store
from citysense_common.warnings.config import PublicWarnings
from fastapi import APIRouter, Depends, FastAPI, Path, Request
from fastapi.responses import Response

from citysense_alert_api.cap.messages import CapMessage, build_message
from citysense_alert_api.cap.xml import ATOM_MEDIA_TYPE, CAP_MEDIA_TYPE, atom_feed, cap_xml
from citysense_alert_api.page_cache import PageCache
from citysense_alert_api.problems import Problem, problem_responses
from citysense_alert_api.routes.deps import StoreDep
from citysense_alert_api.settings import ApiSettings

router = APIRouter(prefix="/v1/cap", tags=["cap"])
PAGE = 500  # store page size while collecting the feed's alerts
SCAN_FACTOR = 10  # at most this many times max_entries records are read for one feed


def install(app: FastAPI, settings: ApiSettings) -> None:
    """Read the CAP configuration once (None: the routes answer 404) and add the routes."""
    app.state.cap_feed = settings.public_warnings()
    app.include_router(router)


def _not_found(what: str) -> Problem:
    return Problem(404, "Alert not found", what, type_="urn:citysense:problem:not-found")


async def get_feed(request: Request) -> PublicWarnings:
    feed: PublicWarnings | None = request.app.state.cap_feed
    if feed is None:
        raise _not_found("This API publishes no CAP feed (no config/cap.yaml).")
    return feed


FeedDep = Annotated[PublicWarnings, Depends(get_feed)]


def _base_url(request: Request, feed: PublicWarnings) -> str:
    return (feed.config.public_url or str(request.base_url)).rstrip("/")


def _xml_response(request: Request, body: bytes, media_type: str) -> Response:
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    matches = [tag.strip().removeprefix("W/") for tag in request.headers.get("if-none-match", "").split(",")]
    if etag in matches or "*" in matches:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)


def _xml_doc(media_type: str, what: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": what, "content": {media_type: {"schema": {"type": "string"}}}},
            304: {"description": "not modified since the ETag given in If-None-Match"}}


def collect_records(store: Store, feed: PublicWarnings, now: datetime) -> list[AlertRecord]:
    """Active alerts of the public kinds, and resolved ones recent enough for their all-clear to be current
    (opened within ``lookback_days`` before that)."""
    config = feed.config
    limit = config.max_entries * SCAN_FACTOR
    since = now - timedelta(hours=config.all_clear_hours) - timedelta(days=config.lookback_days)
    records: list[AlertRecord] = []
    for kind in sorted(config.public, key=lambda k: list(AlertKind).index(k)):
        for state in ("active", "resolved"):
            cursor = None
            while len(records) < limit:
                query = AlertQuery(state=state, kind=kind.value, since=None if state == "active" else since,
                                   limit=PAGE, cursor=cursor)
                page = store.list_alerts(query)
                records.extend(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
    return records[:limit]


def current_messages(records: list[AlertRecord], feed: PublicWarnings, now: datetime,
                     base_url: str) -> list[CapMessage]:
    messages = [m for m in (build_message(r, feed, now, base_url) for r in records) if m is not None]
    current = [m for m in messages if m.current(now)]
    current.sort(key=lambda m: (m.sent, m.identifier), reverse=True)
    return current[: feed.config.max_entries]


@router.get("/alerts.atom", response_class=Response,
            responses={**_xml_doc(ATOM_MEDIA_TYPE, "Atom feed: one entry per current CAP message, newest first"),
                       **problem_responses(404, 503)})
async def cap_feed(request: Request, feed: FeedDep, store: StoreDep) -> Response:
    """Atom feed of the current CAP 1.2 messages of public alerts: active alerts, and all-clears and
    cancellations until they expire. Each entry links to the message (``application/cap+xml``)."""
    pages: PageCache = request.app.state.alert_pages
    base_url = _base_url(request, feed)
    key = ("cap-feed", base_url)
    body = pages.get(key)
    if body is None:
        ticket = pages.begin()
        now = datetime.now(UTC)
        records = await store.run(collect_records, store.store, feed, now)
        first = next(iter(feed.config.languages.values()))
        body = atom_feed(current_messages(records, feed, now, base_url), sender=feed.config.sender,
                         title=first.feed_title, author=first.sender_name, base_url=base_url, now=now)
        pages.put(key, ticket, body)
    return _xml_response(request, body, ATOM_MEDIA_TYPE)


@router.get("/alerts/{alert_id}.xml", response_class=Response,
            responses={**_xml_doc(CAP_MEDIA_TYPE, "the alert's current CAP 1.2 message"),
                       **problem_responses(404, 422, 503)})
async def cap_message(alert_id: Annotated[str, Path(min_length=1, max_length=200)], request: Request,
                      feed: FeedDep, store: StoreDep) -> Response:
    """The current CAP 1.2 message of a public alert (``Alert``, ``Update`` or ``Cancel``); 404 for an alert that
    does not exist or is not public."""
    record = await store.get_alert(alert_id)
    message = None if record is None else build_message(record, feed, datetime.now(UTC), _base_url(request, feed))
    if message is None:
        raise _not_found(f"No public alert with id {alert_id!r}.")
    return _xml_response(request, cap_xml(message), CAP_MEDIA_TYPE)
