"""Webhook subscriptions: create (secret shown once), list, read, change, delete, test, delivery log."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated

from citysense_common.contract import format_ts
from citysense_common.store import NotFound, Subscription
from citysense_common.webhooks import (
    UnsafeWebhookURL,
    WebhookTestRequest,
    check_webhook_url,
    generate_secret,
    webhook_id_for,
)
from fastapi import APIRouter, Path, Query, Request, Response

from citysense_alert_api.convert import delivery_out, subscription_out
from citysense_alert_api.models import (
    DeliveryPage,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionList,
    SubscriptionOut,
    SubscriptionPatch,
    TestRequested,
)
from citysense_alert_api.problems import Problem, problem_responses
from citysense_alert_api.routes.deps import (
    CURSOR_REGEX,
    CursorsDep,
    SettingsDep,
    StoreDep,
    WriteAuth,
    cursor_guard,
)
from citysense_alert_api.settings import ApiSettings
from citysense_alert_api.store_calls import StoreCalls
from citysense_alert_api.test_requests import TestRequestPublisher

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])
SUBSCRIPTION_ID_REGEX = r"^sub_[a-f0-9]{24}$"
SubIdPath = Annotated[str, Path(pattern=SUBSCRIPTION_ID_REGEX, description="subscription id, sub_...")]


async def _check_url(url: str, settings: ApiSettings) -> None:
    try:
        await check_webhook_url(url, settings.allowed_networks(), ports=settings.webhook_ports_allowed())
    except UnsafeWebhookURL as exc:
        raise Problem(422, "Webhook URL refused", str(exc), type_="urn:citysense:problem:unsafe-webhook-url",
                      invalid_params=[{"name": "body.url", "reason": str(exc)}]) from None


async def _get(store: StoreCalls, subscription_id: str) -> Subscription:
    sub = await store.get_subscription(subscription_id)
    if sub is None:
        raise Problem(404, "Subscription not found", f"No subscription with id {subscription_id!r}.",
                      type_="urn:citysense:problem:not-found")
    return sub


@router.post("", status_code=201, response_model=SubscriptionCreated, dependencies=[WriteAuth],
             responses=problem_responses(401, 403, 422, 503))
async def create_subscription(body: SubscriptionCreate, store: StoreDep, settings: SettingsDep,
                              response: Response) -> SubscriptionCreated:
    """Subscribe a URL to alert events. The response carries the signing secret: it is never shown again."""
    url = str(body.url)
    await _check_url(url, settings)
    now = datetime.now(UTC)
    sub = Subscription(id=f"sub_{secrets.token_hex(12)}", url=url, secret=generate_secret(),
                       description=body.description,
                       filters=body.filters.model_dump(mode="json", exclude_none=True),
                       status="active", created_at=now, updated_at=now)
    await store.create_subscription(sub)
    response.headers["Location"] = f"/v1/subscriptions/{sub.id}"
    response.headers["Cache-Control"] = "no-store"  # the secret must not sit in a cache
    return SubscriptionCreated(**subscription_out(sub).model_dump(), secret=sub.secret)


@router.get("", response_model=SubscriptionList, dependencies=[WriteAuth], responses=problem_responses(401, 403, 503))
async def list_subscriptions(store: StoreDep) -> SubscriptionList:
    """All subscriptions (without secrets). Needs the token: URLs may be private to their owner."""
    subs = sorted(await store.list_subscriptions(),
                  key=lambda s: (s.created_at or datetime.min.replace(tzinfo=UTC), s.id))
    return SubscriptionList(items=[subscription_out(s) for s in subs])


@router.get("/{subscription_id}", response_model=SubscriptionOut, dependencies=[WriteAuth],
            responses=problem_responses(401, 403, 404, 422, 503))
async def get_subscription(subscription_id: SubIdPath, store: StoreDep) -> SubscriptionOut:
    return subscription_out(await _get(store, subscription_id))


@router.patch("/{subscription_id}", response_model=SubscriptionOut, dependencies=[WriteAuth],
              responses=problem_responses(401, 403, 404, 422, 503))
async def update_subscription(subscription_id: SubIdPath, body: SubscriptionPatch, store: StoreDep,
                              settings: SettingsDep) -> SubscriptionOut:
    """Pause or resume (``status``), change the URL, description or filters (``filters`` replaces all)."""
    sub = await _get(store, subscription_id)
    changes: dict[str, object] = {}
    if body.url is not None:
        await _check_url(str(body.url), settings)
        changes["url"] = str(body.url)
    if body.description is not None:
        changes["description"] = body.description
    if body.filters is not None:
        changes["filters"] = body.filters.model_dump(mode="json", exclude_none=True)
    if body.status is not None:
        changes["status"] = body.status
    updated = replace(sub, **changes, updated_at=datetime.now(UTC))  # type: ignore[arg-type]
    try:
        await store.update_subscription(updated)
    except NotFound:
        raise Problem(404, "Subscription not found", f"No subscription with id {subscription_id!r}.",
                      type_="urn:citysense:problem:not-found") from None
    return subscription_out(updated)


@router.delete("/{subscription_id}", status_code=204, dependencies=[WriteAuth],
               responses=problem_responses(401, 403, 404, 422, 503))
async def delete_subscription(subscription_id: SubIdPath, store: StoreDep) -> Response:
    if not await store.delete_subscription(subscription_id):
        raise Problem(404, "Subscription not found", f"No subscription with id {subscription_id!r}.",
                      type_="urn:citysense:problem:not-found")
    return Response(status_code=204)


@router.post("/{subscription_id}/test", status_code=202, response_model=TestRequested, dependencies=[WriteAuth],
             responses=problem_responses(401, 403, 404, 409, 422, 503))
async def send_test_event(subscription_id: SubIdPath, request: Request, store: StoreDep) -> TestRequested:
    """Ask the notifier to deliver an ``io.citysense.test`` CloudEvent to this subscription.

    The request travels over Kafka to the notifier, so the test exercises the real path: URL check, signing,
    retries and the delivery log, where the outcome appears under the returned event_id.
    """
    sub = await _get(store, subscription_id)
    if sub.status != "active":
        raise Problem(409, "Subscription paused", "Resume the subscription (PATCH status=active) before testing it.",
                      type_="urn:citysense:problem:subscription-paused")
    event_id = f"test-{uuid.uuid4().hex}"
    publisher: TestRequestPublisher = request.app.state.test_publisher
    await publisher.publish(WebhookTestRequest(subscription_id=sub.id, event_id=event_id,
                                               requested_at=format_ts(datetime.now(UTC))))
    return TestRequested(subscription_id=sub.id, event_id=event_id, webhook_id=webhook_id_for(sub.id, event_id),
                         deliveries_url=f"/v1/subscriptions/{sub.id}/deliveries")


@router.get("/{subscription_id}/deliveries", response_model=DeliveryPage, dependencies=[WriteAuth],
            responses=problem_responses(400, 401, 403, 404, 422, 503))
async def list_deliveries(
    subscription_id: SubIdPath,
    store: StoreDep,
    cursors: CursorsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(pattern=CURSOR_REGEX)] = None,
) -> DeliveryPage:
    """The delivery log: every event sent (or being retried, or dead-lettered) to this subscription."""
    scope = ("deliveries", subscription_id)
    store_cursor = None if cursor is None else cursors.open(cursor, scope)["s"]
    await _get(store, subscription_id)
    with cursor_guard():
        page = await store.list_deliveries(subscription_id, limit=limit, cursor=store_cursor)
    next_cursor = None if page.next_cursor is None else cursors.seal(scope, page.next_cursor)
    return DeliveryPage(items=[delivery_out(d) for d in page.items], next_cursor=next_cursor)
