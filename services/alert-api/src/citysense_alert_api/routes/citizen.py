"""Citizens' self-service area subscriptions: public, no token (double opt-in by email, signed links).

* ``POST /v1/citizen/subscriptions`` answers 202 with one and the same body whatever the address: a new address,
  a pending or a confirmed one, or one at its limit of areas. What it does differs, what it says and how long it
  takes do not (``CITYSENSE_CITIZEN_RESPONSE_FLOOR_S``): nothing tells a caller who is subscribed. It creates a
  pending subscription and asks the notifier (over Kafka) for a confirmation email, except when the address
  already holds a confirmed subscription with the same circle, lowest level and language (nobody can fill a
  subscriber's inbox from the form) or already holds ``max_areas_per_address`` areas. Those requests still produce
  one mail request, for an id that names no subscription, which the notifier drops: every accepted request does
  the same broker round trip and fails the same way (503) while the broker is away. Asking again for a pending
  subscription replaces it with a new pending one and a new email. If the broker does not take the request, the
  pending subscription is removed again and the answer is 503: nothing is left half-done. Pending subscriptions
  whose confirmation link has expired are deleted (swept in the background of a subscribe request at most every
  ten minutes per process).
* ``GET /citizen/confirm`` and ``GET /citizen/unsubscribe`` show a page with a button; only the button's POST
  changes anything (mail scanners open links). Confirming replaces the address's other subscriptions with the
  same circle (a new lowest level or language is a new subscription that takes the old one's place once confirmed).
* ``POST /v1/citizen/unsubscribe`` deletes and answers 200 whether or not the subscription still exists; it also
  takes the RFC 8058 one-click POST of mail clients (``List-Unsubscribe=One-Click``, token in the URL).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs

from citysense_common.citizen.addresses import normalise_email
from citysense_common.citizen.area import RADIUS_MAX_KM, RADIUS_MIN_KM
from citysense_common.citizen.mail import MailRequest
from citysense_common.citizen.settings import CitizenSettings
from citysense_common.citizen.tokens import ExpiredToken, InvalidToken, Purpose, TokenError, WrongPurpose, verify
from citysense_common.store import AreaSubscription, NotFound
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import JSONResponse, Response

from citysense_alert_api.citizen import pages
from citysense_alert_api.citizen.mail_requests import MailRequestFailed, MailRequestPublisher
from citysense_alert_api.citizen.rate_limits import SlidingWindowLimiter, client_key, retry_after
from citysense_alert_api.problems import Problem, problem_response, problem_responses
from citysense_alert_api.routes.deps import StoreDep
from citysense_alert_api.settings import ApiSettings
from citysense_alert_api.store_calls import StoreCalls

log = logging.getLogger("citysense.alert_api.citizen")
router = APIRouter(tags=["citizen"])
ACCEPTED_DETAIL = ("If this address can receive email, a message with a confirmation link is on its way. Warnings "
                   "start once the link is opened and confirmed; an address that is already subscribed is left as "
                   "it is.")
TOKEN_MAX = 512
SWEEP_INTERVAL_S = 600.0  # between two sweeps of expired pending subscriptions, per process


@dataclass
class CitizenState:
    settings: CitizenSettings
    secret: str
    per_address: SlidingWindowLimiter
    per_client: SlidingWindowLimiter
    mail: MailRequestPublisher
    next_sweep: float = 0.0
    sweeps: set[asyncio.Task[None]] = field(default_factory=set)


def install(app: FastAPI, settings: ApiSettings) -> None:
    """Add the routes when citizen subscriptions are on (``CITYSENSE_CITIZEN_ENABLED``); off, they answer 404.
    Raises SettingsError when the signing secret is missing in production."""
    citizen = settings.citizen
    if not citizen.enabled:
        app.state.citizen = None
        return
    app.state.citizen = CitizenState(
        settings=citizen, secret=citizen.resolve_secret(settings.env, settings.data_dir),
        per_address=SlidingWindowLimiter(citizen.rate_per_address, citizen.rate_window_s),
        per_client=SlidingWindowLimiter(citizen.rate_per_client, citizen.rate_window_s),
        mail=MailRequestPublisher(settings, citizen.mail_topic))
    app.include_router(router)


def close(app: FastAPI) -> None:
    state: CitizenState | None = getattr(app.state, "citizen", None)
    if state is not None:
        state.mail.close()


def _state(request: Request) -> CitizenState:
    return request.app.state.citizen


# ---------------------------------------------------------------------- subscribe


class CitizenSubscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=320, description="where warnings go; a confirmation link is sent there first")
    lat: float = Field(description="centre of the area, degrees north (-90..90)", examples=[52.52])
    lon: float = Field(description="centre of the area, degrees east (-180..180)", examples=[13.405])
    radius_km: float = Field(description=f"radius of the area in km ({RADIUS_MIN_KM:g}..{RADIUS_MAX_KM:g})",
                             examples=[2.0])
    min_severity: Literal["info", "warning", "critical"] = Field(
        default="warning", description="the lowest level to be warned about")
    language: Literal["en", "de"] = Field(default="en", description="language of the emails")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return normalise_email(value)  # InvalidAddress is a ValueError: a 422 with its message

    @field_validator("lat")
    @classmethod
    def _lat(cls, value: float) -> float:
        if not (math.isfinite(value) and -90 <= value <= 90):
            raise ValueError("the latitude must be a number between -90 and 90")
        return round(value, 5)  # about a metre: the same place chosen twice is the same area

    @field_validator("lon")
    @classmethod
    def _lon(cls, value: float) -> float:
        if not (math.isfinite(value) and -180 <= value <= 180):
            raise ValueError("the longitude must be a number between -180 and 180")
        return round(value, 5)

    @field_validator("radius_km")
    @classmethod
    def _radius(cls, value: float) -> float:
        if not (math.isfinite(value) and RADIUS_MIN_KM <= value <= RADIUS_MAX_KM):
            raise ValueError(f"the radius must be between {RADIUS_MIN_KM:g} and {RADIUS_MAX_KM:g} km")
        return round(value, 3)


class SubscribeAccepted(BaseModel):
    status: Literal["pending"] = "pending"
    detail: str = ACCEPTED_DETAIL


class StepDone(BaseModel):
    status: Literal["confirmed", "unsubscribed"]


def _same_circle(a: AreaSubscription, lat: float, lon: float, radius_km: float) -> bool:
    return (a.lat, a.lon, a.radius_km) == (lat, lon, radius_km)


async def _sweep_expired(state: CitizenState, store: StoreCalls) -> None:
    """Delete pending subscriptions whose confirmation link has expired: an address nobody confirmed is not kept."""
    cutoff = datetime.now(UTC) - state.settings.token_lifetime("confirm")
    try:
        expired = [s.id for s in await store.list_area_subscriptions("pending")
                   if s.created_at is not None and s.created_at <= cutoff]
        for subscription_id in expired:
            await store.delete_area_subscription(subscription_id)
        if expired:
            log.info("deleted %d pending subscriptions never confirmed", len(expired))
    except Exception as exc:  # noqa: BLE001 - the store may be down; the next sweep tries again
        log.warning("could not delete expired pending subscriptions: %r", exc)


def _maybe_sweep(state: CitizenState, store: StoreCalls) -> None:
    """At most every SWEEP_INTERVAL_S per process, on a subscribe request, in the background (the answer's timing
    stays the same). Without requests nothing new is pending either."""
    now = time.monotonic()
    if now < state.next_sweep:
        return
    state.next_sweep = now + SWEEP_INTERVAL_S
    task = asyncio.create_task(_sweep_expired(state, store))
    state.sweeps.add(task)  # keep a reference until it is done
    task.add_done_callback(state.sweeps.discard)


def _new_id() -> str:
    return secrets.token_urlsafe(18)  # 144 random bits, URL-safe; says nothing about the address


async def _publish(state: CitizenState, subscription_id: str) -> None:
    try:
        await state.mail.publish(MailRequest(type="confirm", subscription_id=subscription_id))
    except MailRequestFailed as exc:
        log.warning("subscribe: the mail request did not reach Kafka (%s); nothing saved", exc)
        raise Problem(503, "Service Unavailable", "The confirmation email cannot be requested right now; nothing was "
                      "saved. Please try again in a few minutes.", headers={"Retry-After": "30"}) from None


async def _create_and_request_mail(state: CitizenState, store: StoreCalls, body: CitizenSubscribe) -> None:
    now = datetime.now(UTC)
    confirm_window = state.settings.token_lifetime("confirm")
    existing = await store.list_area_subscriptions(email=body.email)
    live: list[AreaSubscription] = []
    for sub in existing:
        if sub.status == "pending" and sub.created_at is not None and sub.created_at <= now - confirm_window:
            await store.delete_area_subscription(sub.id)  # never confirmed in time: its link no longer works
        else:
            live.append(sub)
    same = [s for s in live if _same_circle(s, body.lat, body.lon, body.radius_km)
            and (s.min_severity, s.language) == (body.min_severity, body.language)]
    replaced = [s for s in same if s.status == "pending"]
    if any(s.status == "confirmed" for s in same) or (
            len(live) - len(replaced) >= state.settings.max_areas_per_address):
        await _publish(state, _new_id())  # names no subscription: the notifier sends nothing
        return
    sub = AreaSubscription(id=_new_id(), email=body.email, lat=body.lat, lon=body.lon,
                           radius_km=body.radius_km, min_severity=body.min_severity, language=body.language,
                           status="pending", created_at=now)
    await store.create_area_subscription(sub)
    try:
        await _publish(state, sub.id)
    except Problem:
        await store.delete_area_subscription(sub.id)
        raise
    for old in replaced:  # its link is superseded by the new email's
        await store.delete_area_subscription(old.id)


@router.post("/v1/citizen/subscriptions", status_code=202, response_model=SubscribeAccepted,
             responses=problem_responses(413, 422, 429, 503))
async def subscribe(body: CitizenSubscribe, request: Request, store: StoreDep) -> SubscribeAccepted:
    """Ask for email warnings for a circle on the map (double opt-in: the address gets a confirmation link first).

    The answer is the same whoever the address belongs to and whether it is subscribed already. Limits: requests
    per client address and per email address within ``CITYSENSE_CITIZEN_RATE_WINDOW_S`` (429 with Retry-After).
    """
    started = time.monotonic()
    state = _state(request)
    wait = state.per_client.hit(client_key(request.client.host if request.client else None))
    if wait is not None:
        raise Problem(429, "Too many requests", "Too many subscribe requests from your network; please try again "
                      "later.", type_="urn:citysense:problem:rate-limited", headers={"Retry-After": retry_after(wait)})
    wait = state.per_address.hit(body.email)
    if wait is not None:
        raise Problem(429, "Too many requests", "Too many subscribe requests for this email address recently; "
                      "please try again later.", type_="urn:citysense:problem:rate-limited",
                      headers={"Retry-After": retry_after(wait)})
    _maybe_sweep(state, store)
    await _create_and_request_mail(state, store, body)
    remaining = state.settings.response_floor_s - (time.monotonic() - started)
    if remaining > 0:
        await asyncio.sleep(remaining)
    return SubscribeAccepted()


# ---------------------------------------------------------------------- confirm and unsubscribe

_TOKEN_BODY = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {"schema": {"type": "object", "properties": {"token": {
                "type": "string", "maxLength": TOKEN_MAX}}}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": {"token": {
                "type": "string", "maxLength": TOKEN_MAX}, "lang": {"type": "string"}}}},
        },
    },
}


def _done_responses(step: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": f"{step} (HTML page for a form post, JSON otherwise)",
              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StepDone"}},
                          "text/html": {"schema": {"type": "string"}}}},
        **{status: {**entry, "content": {**entry["content"], "text/html": {"schema": {"type": "string"}}}}
           for status, entry in problem_responses(400, 404, 413, 422, 503).items()},
    }


@dataclass
class _Submitted:
    token: str | None
    html: bool  # a browser form from the pages: answer with a page
    language: str | None


async def _submitted(request: Request, query_token: str | None) -> _Submitted:
    """The token from the query, a JSON body or a form body; whether the caller is a browser form."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    token, language, html = query_token, None, False
    if content_type == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise Problem(422, "Invalid request", "The request body is not valid JSON.",
                          type_="urn:citysense:problem:invalid-request") from None
        if not isinstance(data, dict) or not isinstance(data.get("token", ""), str):
            raise Problem(422, "Invalid request", 'Send {"token": "..."} with the token from the link.',
                          type_="urn:citysense:problem:invalid-request")
        token = token or data.get("token")
    elif content_type == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(raw.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            form = {}
        # A mail client's RFC 8058 one-click POST is not a person at a browser: no page for it.
        html = "List-Unsubscribe" not in form
        token = token or (form.get("token") or [None])[0]
        language = (form.get("lang") or [None])[0]
    return _Submitted(token, html, language)


def _token_failure(exc: TokenError, submitted: _Submitted, request: Request) -> Response:
    reason = ("expired" if isinstance(exc, ExpiredToken) else "wrong_purpose" if isinstance(exc, WrongPurpose)
              else "invalid")
    if submitted.html:
        return pages.error_page(reason, pages.pick_language(submitted.language,
                                                            request.headers.get("accept-language")))
    return problem_response(request, 400, "Invalid link", str(exc), type_=f"urn:citysense:problem:link-{reason}")


def _verify(state: CitizenState, token: str | None, purpose: Purpose) -> str:
    if not token:
        raise InvalidToken("The link has no token. Copy the whole link from the email.")
    return verify(token, purpose, state.secret, datetime.now(UTC))


@router.get("/citizen/confirm", include_in_schema=False)
async def confirm_page(request: Request, store: StoreDep,
                       token: str = Query(default="", max_length=TOKEN_MAX)) -> Response:
    """The confirmation link's page: checks the link and shows the button; changes nothing."""
    state = _state(request)
    accept = request.headers.get("accept-language")
    try:
        subscription_id = _verify(state, token, "confirm")
    except TokenError as exc:
        return _token_failure(exc, _Submitted(token, True, None), request)
    sub = await store.get_area_subscription(subscription_id)
    if sub is None:
        return pages.error_page("gone", pages.pick_language(None, accept), status=404)
    return pages.action_page("confirm", token, pages.pick_language(sub.language))


@router.post("/v1/citizen/subscriptions/confirm", response_model=StepDone, openapi_extra=_TOKEN_BODY,
             responses=_done_responses("confirmed"))
async def confirm(request: Request, store: StoreDep) -> Response:
    """Confirm a subscription with the token of its confirmation link (form field or JSON ``token``)."""
    state = _state(request)
    submitted = await _submitted(request, None)
    try:
        subscription_id = _verify(state, submitted.token, "confirm")
    except TokenError as exc:
        return _token_failure(exc, submitted, request)
    sub = await store.get_area_subscription(subscription_id)
    try:
        if sub is None:
            raise NotFound(subscription_id)
        if sub.status != "confirmed":
            sub = replace(sub, status="confirmed", confirmed_at=datetime.now(UTC))
            await store.update_area_subscription(sub)
    except NotFound:
        language = pages.pick_language(submitted.language, request.headers.get("accept-language"))
        if submitted.html:
            return pages.error_page("gone", language, status=404)
        return problem_response(request, 404, "Subscription not found", pages.text("gone", "en"),
                                type_="urn:citysense:problem:not-found")
    for other in await store.list_area_subscriptions(email=sub.email):
        if other.id != sub.id and _same_circle(other, sub.lat, sub.lon, sub.radius_km):
            await store.delete_area_subscription(other.id)  # the new level or language takes its place
    if submitted.html:
        return pages.done_page("confirmed", pages.pick_language(sub.language))
    return JSONResponse({"status": "confirmed"}, headers={"Cache-Control": "no-store"})


@router.get("/citizen/unsubscribe", include_in_schema=False)
async def unsubscribe_page(request: Request, store: StoreDep,
                           token: str = Query(default="", max_length=TOKEN_MAX)) -> Response:
    """The unsubscribe link's page: checks the link and shows the button; changes nothing."""
    state = _state(request)
    try:
        subscription_id = _verify(state, token, "unsubscribe")
    except TokenError as exc:
        return _token_failure(exc, _Submitted(token, True, None), request)
    sub = await store.get_area_subscription(subscription_id)
    language = pages.pick_language(sub.language if sub else None, request.headers.get("accept-language"))
    return pages.action_page("unsubscribe", token, language)  # the same page when it is gone already


@router.post("/v1/citizen/unsubscribe", response_model=StepDone, openapi_extra=_TOKEN_BODY,
             responses=_done_responses("unsubscribed"))
@router.post("/citizen/unsubscribe", include_in_schema=False)
async def unsubscribe(request: Request, store: StoreDep,
                      token: str | None = Query(default=None, max_length=TOKEN_MAX)) -> Response:
    """Delete the subscription of an unsubscribe token (in the URL, a form field or JSON ``token``); RFC 8058
    one-click POSTs from mail clients included. The answer is the same whether or not it still existed."""
    state = _state(request)
    submitted = await _submitted(request, token)
    try:
        subscription_id = _verify(state, submitted.token, "unsubscribe")
    except TokenError as exc:
        return _token_failure(exc, submitted, request)
    sub = await store.get_area_subscription(subscription_id)
    await store.delete_area_subscription(subscription_id)
    if submitted.html:
        language = pages.pick_language(submitted.language or (sub.language if sub else None),
                                       request.headers.get("accept-language"))
        return pages.done_page("unsubscribed", language)
    return JSONResponse({"status": "unsubscribed"}, headers={"Cache-Control": "no-store"})


@router.get("/citizen/pages.css", include_in_schema=False)
async def stylesheet() -> Response:
    return Response(pages.STYLESHEET, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})
