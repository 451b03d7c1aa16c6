"""Citizens' public area subscriptions on a real uvicorn server with a real Kafka broker: subscribe (same answer for
everyone, rate limits, validation, broker down), the confirm and unsubscribe pages and their POSTs."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from citysense_alert_api.app import create_app
from citysense_alert_api.settings import ApiSettings
from citysense_common.citizen.settings import CitizenSettings
from citysense_common.citizen.tokens import sign
from citysense_common.store import AreaSubscription, Store
from citysense_localstack.servers.kafka import running_kafka
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from .conftest import CITIZEN_SECRET as SECRET
from .conftest import TOKEN, LiveServer, running_api

PROBLEM = "application/problem+json"
SUBSCRIBE = "/v1/citizen/subscriptions"
GOOD: dict[str, Any] = {"email": "anna@example.org", "lat": 48.8566, "lon": 2.3522, "radius_km": 2.0,
                        "min_severity": "warning", "language": "de"}


Maker = Callable[..., CitizenSettings]


@pytest.fixture
def citizen_settings(api_settings: ApiSettings) -> Maker:
    """The fixture's citizen settings (its secret and its own mail topic), without the response floor and the rate
    limits unless a test sets them."""
    def make(**overrides: Any) -> CitizenSettings:
        values: dict[str, Any] = dict(response_floor_s=0.0, rate_per_client=1000, rate_per_address=1000)
        return api_settings.citizen.model_copy(update={**values, **overrides})

    return make


@pytest.fixture
def server(api_settings: ApiSettings, store: Store, citizen_settings: Maker) -> Iterator[LiveServer]:
    settings = api_settings.model_copy(update={"citizen": citizen_settings()})
    with running_api(settings, store, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as live:
        yield live


def mail_requests(settings: ApiSettings, expected: int, timeout: float = 15.0) -> list[tuple[bytes, dict]]:
    """Every message on the mail topic (key, JSON value); waits until ``expected`` arrived, then a little longer
    so an unexpected extra one is seen too."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap, "group.id": f"t-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    topic = settings.citizen.mail_topic
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        found: list[tuple[bytes, dict]] = []
        deadline = time.monotonic() + timeout
        settle = None
        while time.monotonic() < (settle or deadline):
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                found.append((msg.key(), json.loads(msg.value())))
            if len(found) >= expected and settle is None:
                settle = time.monotonic() + 1.0
        return found
    finally:
        consumer.close()


def subscribe(server: LiveServer, body: dict[str, Any] | None = None, client_ip: str = "203.0.113.7",
              **kw: Any) -> httpx.Response:
    return httpx.post(server.url + SUBSCRIBE, json=body if body is not None else GOOD,
                      headers={"X-Forwarded-For": client_ip}, timeout=30, **kw)


def rows(store: Store, email: str = "anna@example.org") -> list[AreaSubscription]:
    return store.list_area_subscriptions(email=email)


def token(purpose: str, subscription_id: str, hours: float = 1.0, secret: str = SECRET) -> str:
    return sign(purpose, subscription_id, datetime.now(UTC) + timedelta(hours=hours), secret)  # type: ignore[arg-type]


# ---------------------------------------------------------------------- subscribe


def test_subscribe_creates_a_pending_subscription_and_asks_for_a_confirmation(server: LiveServer) -> None:
    r = subscribe(server, {**GOOD, "email": "  Anna@EXAMPLE.org ", "lat": 48.8566049, "lon": 2.35224})
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "pending", "detail": r.json()["detail"]} and "confirmation link" in r.json()["detail"]
    [sub] = rows(server.store, "Anna@example.org")
    assert (sub.status, sub.lat, sub.lon, sub.radius_km, sub.min_severity, sub.language) == (
        "pending", 48.8566, 2.35224, 2.0, "warning", "de")
    assert sub.confirmed_at is None and len(sub.id) >= 24 and "anna" not in sub.id.lower()
    assert mail_requests(server.settings, 1) == [(sub.id.encode(), {"type": "confirm", "subscription_id": sub.id})]


def test_the_answer_is_the_same_whoever_the_address_is(server: LiveServer) -> None:
    """New, pending, confirmed and at-limit addresses get the same status, body and headers; a confirmed address is
    sent nothing, and each request still makes one broker round trip."""
    store = server.store
    store.create_area_subscription(AreaSubscription(
        id="confirmed-one", email="bob@example.org", lat=GOOD["lat"], lon=GOOD["lon"], radius_km=2.0,
        min_severity="warning", language="de", status="confirmed", created_at=datetime.now(UTC),
        confirmed_at=datetime.now(UTC)))
    for i in range(5):  # the default limit of areas per address
        store.create_area_subscription(AreaSubscription(
            id=f"full-{i}", email="full@example.org", lat=10.0 + i, lon=10.0, radius_km=1.0, min_severity="info",
            language="en", status="confirmed", created_at=datetime.now(UTC)))
    answers = [subscribe(server, {**GOOD, "email": email}) for email in
               ("new@example.org", "bob@example.org", "full@example.org")]
    assert {a.status_code for a in answers} == {202}
    assert len({a.content for a in answers}) == 1
    keep = {"content-type", "cache-control", "content-length"}
    assert len({tuple(sorted((k, v) for k, v in a.headers.items() if k in keep)) for a in answers}) == 1
    assert [s.id for s in rows(store, "bob@example.org")] == ["confirmed-one"]  # nothing new
    assert len(rows(store, "full@example.org")) == 5
    [new] = rows(store, "new@example.org")
    requests = mail_requests(server.settings, 3)
    assert len(requests) == 3
    ids = {value["subscription_id"] for _, value in requests}
    assert new.id in ids
    # The other two name no subscription at all (the notifier drops them): not the confirmed one's id.
    assert all(store.get_area_subscription(i) is None for i in ids - {new.id})


def test_asking_again_while_pending_replaces_it_with_a_new_confirmation(server: LiveServer) -> None:
    assert subscribe(server).status_code == 202
    [first] = rows(server.store)
    assert subscribe(server).status_code == 202
    [second] = rows(server.store)
    assert second.id != first.id and second.status == "pending"
    assert sorted(v["subscription_id"] for _, v in mail_requests(server.settings, 2)) == sorted([first.id, second.id])
    # Another circle for the same address is a subscription of its own.
    assert subscribe(server, {**GOOD, "radius_km": 5}).status_code == 202
    assert len(rows(server.store)) == 2


def test_an_expired_pending_subscription_is_removed_when_the_address_asks_again(server: LiveServer) -> None:
    old = datetime.now(UTC) - timedelta(hours=49)
    server.store.create_area_subscription(AreaSubscription(
        id="stale", email="anna@example.org", lat=1.0, lon=1.0, radius_km=1.0, min_severity="info", language="en",
        created_at=old))
    assert subscribe(server).status_code == 202
    assert [s.id for s in rows(server.store)] != ["stale"] and server.store.get_area_subscription("stale") is None


def test_pending_subscriptions_never_confirmed_are_swept(server: LiveServer) -> None:
    old, fresh = datetime.now(UTC) - timedelta(hours=49), datetime.now(UTC) - timedelta(hours=47)
    for sub_id, status, created in (("stale", "pending", old), ("fresh", "pending", fresh),
                                    ("kept", "confirmed", old)):
        server.store.create_area_subscription(AreaSubscription(
            id=sub_id, email=f"{sub_id}@example.org", lat=1.0, lon=1.0, radius_km=1.0, min_severity="info",
            language="en", status=status, created_at=created))
    assert subscribe(server).status_code == 202  # any address: the sweep runs in the background
    deadline = time.monotonic() + 10
    while server.store.get_area_subscription("stale") is not None:
        assert time.monotonic() < deadline, "the expired pending subscription was not deleted"
        time.sleep(0.05)
    assert server.store.get_area_subscription("fresh") is not None
    assert server.store.get_area_subscription("kept") is not None


def test_every_answer_takes_at_least_the_response_floor(api_settings: ApiSettings, store: Store,
                                                        citizen_settings: Maker) -> None:
    settings = api_settings.model_copy(update={"citizen": citizen_settings(response_floor_s=0.5)})
    store.create_area_subscription(AreaSubscription(
        id="c1", email="bob@example.org", lat=GOOD["lat"], lon=GOOD["lon"], radius_km=2.0, min_severity="warning",
        language="de", status="confirmed", created_at=datetime.now(UTC)))
    with running_api(settings, store) as live:
        for email in ("new@example.org", "bob@example.org"):
            started = time.monotonic()
            assert subscribe(live, {**GOOD, "email": email}).status_code == 202
            assert 0.5 <= time.monotonic() - started < 5.0, email


@pytest.mark.parametrize(("change", "where", "words"), [
    ({"email": "not-an-address"}, "body.email", "like name@example.org"),
    ({"email": "anna@localhost"}, "body.email", "not a valid domain"),
    ({"email": "anna@example.org\r\nBcc: x@example.org"}, "body.email", ""),
    ({"email": "a" * 330 + "@example.org"}, "body.email", "at most 320"),
    ({"lat": 90.5}, "body.lat", "between -90 and 90"),
    ({"lon": -180.01}, "body.lon", "between -180 and 180"),
    ({"lat": "north"}, "body.lat", "number"),
    ({"radius_km": 0.05}, "body.radius_km", "between 0.1 and 25 km"),
    ({"radius_km": 26}, "body.radius_km", "between 0.1 and 25 km"),
    ({"min_severity": "high"}, "body.min_severity", "'info', 'warning' or 'critical'"),
    ({"language": "fr"}, "body.language", "'en' or 'de'"),
    ({"email": None}, "body.email", "string"),
    ({"station": "st-1"}, "body.station", "not a known field"),
])
def test_bad_input_is_a_422_a_person_understands(server: LiveServer, change: dict, where: str, words: str) -> None:
    r = subscribe(server, {**GOOD, **change})
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM, r.text
    params = {p["name"]: p["reason"] for p in r.json()["invalid-params"]}
    assert where in params and words in params[where], params
    assert rows(server.store) == []


def test_missing_fields_and_non_json_bodies_are_refused(server: LiveServer) -> None:
    r = subscribe(server, {"email": "anna@example.org"})
    assert r.status_code == 422 and {"body.lat", "body.lon", "body.radius_km"} <= {
        p["name"] for p in r.json()["invalid-params"]}
    r = httpx.post(server.url + SUBSCRIBE, content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "not valid JSON" in r.json()["detail"]
    r = httpx.post(server.url + SUBSCRIBE, content=b'{"lat": NaN}', headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert rows(server.store) == [] and mail_requests(server.settings, 0, timeout=1) == []


def test_an_oversize_body_is_refused_before_anything_else(server: LiveServer) -> None:
    big = {**GOOD, "padding": "x" * (server.settings.api_max_body_bytes + 10)}
    r = subscribe(server, big)
    assert r.status_code == 413 and r.headers["content-type"] == PROBLEM
    assert rows(server.store) == []


def test_rate_limit_per_client_address(api_settings: ApiSettings, store: Store, citizen_settings: Maker) -> None:
    settings = api_settings.model_copy(update={"citizen": citizen_settings(rate_per_client=2, rate_window_s=600)})
    with running_api(settings, store, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as live:
        for i in range(2):
            assert subscribe(live, {**GOOD, "email": f"p{i}@example.org"}).status_code == 202
        r = subscribe(live, {**GOOD, "email": "p9@example.org"})
        assert r.status_code == 429 and r.headers["content-type"] == PROBLEM
        assert 590 <= int(r.headers["retry-after"]) <= 600 and "your network" in r.json()["detail"]
        assert rows(store, "p9@example.org") == []
        # Another client is not held up; an IPv6 client counts by its /64.
        assert subscribe(live, {**GOOD, "email": "p9@example.org"}, client_ip="198.51.100.1").status_code == 202
        assert subscribe(live, {**GOOD, "email": "q1@example.org"}, client_ip="2001:db8::1").status_code == 202
        assert subscribe(live, {**GOOD, "email": "q2@example.org"}, client_ip="2001:db8::2").status_code == 202
        assert subscribe(live, {**GOOD, "email": "q3@example.org"}, client_ip="2001:db8::3").status_code == 429


def test_rate_limit_per_email_address(api_settings: ApiSettings, store: Store, citizen_settings: Maker) -> None:
    settings = api_settings.model_copy(update={"citizen": citizen_settings(rate_per_address=2)})
    with running_api(settings, store, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as live:
        assert subscribe(live, client_ip="198.51.100.1").status_code == 202
        assert subscribe(live, {**GOOD, "radius_km": 3}, client_ip="198.51.100.2").status_code == 202
        r = subscribe(live, {**GOOD, "email": "anna@EXAMPLE.ORG", "radius_km": 4}, client_ip="198.51.100.3")
        assert r.status_code == 429 and "this email address" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        assert len(rows(store)) == 2
        assert subscribe(live, {**GOOD, "email": "other@example.org"}, client_ip="198.51.100.3").status_code == 202


def test_no_broker_at_all_is_a_503_and_nothing_is_kept(api_settings: ApiSettings, store: Store,
                                                  citizen_settings: Maker) -> None:
    settings = api_settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9", "citizen": citizen_settings()})
    with TestClient(create_app(settings, TOKEN, store=store), raise_server_exceptions=False) as client:
        r = client.post(SUBSCRIBE, json=GOOD)
    assert r.status_code == 503 and r.headers["content-type"] == PROBLEM, r.text
    assert r.headers["retry-after"] == "30" and "nothing was saved" in r.json()["detail"]
    assert rows(store) == []


@pytest.mark.slow
def test_a_broker_that_goes_away_is_a_503_and_nothing_is_kept(api_settings: ApiSettings, store: Store,
                                                               citizen_settings: Maker, tmp_path: Path) -> None:
    """A broker of its own, killed while the API's producer is connected to it: the producer gives the request up
    after the deadline, the answer is 503, and the pending subscription just stored is gone again."""
    with running_kafka(tmp_path / "kafka", log_path=tmp_path / "kafka.log") as broker:
        settings = api_settings.model_copy(update={"kafka_bootstrap": broker.bootstrap,
                                                   "citizen": citizen_settings()})
        with running_api(settings, store) as live:
            assert subscribe(live).status_code == 202
            broker.kill()
            started = time.monotonic()
            r = subscribe(live, {**GOOD, "email": "late@example.org"})
            assert r.status_code == 503 and r.headers["content-type"] == PROBLEM, r.text
            assert time.monotonic() - started < 15.0  # the 5 s deadline, and no hang
    assert rows(store, "late@example.org") == []
    assert [s.status for s in rows(store)] == ["pending"]  # the one the broker took stays


def test_off_the_routes_do_not_exist(api_settings: ApiSettings, store: Store, citizen_settings: Maker) -> None:
    settings = api_settings.model_copy(update={"citizen": citizen_settings(enabled=False)})
    with TestClient(create_app(settings, TOKEN, store=store), raise_server_exceptions=False) as client:
        assert client.post(SUBSCRIBE, json=GOOD).status_code == 404
        assert client.get("/citizen/confirm", params={"token": "x"}).status_code == 404
        assert client.post("/v1/citizen/unsubscribe", params={"token": "x"}).status_code == 404
        assert "/v1/citizen/subscriptions" not in client.get("/openapi.json").json()["paths"]


# ---------------------------------------------------------------------- confirm


def pending(store: Store, sub_id: str = "pend-1", **kw: Any) -> AreaSubscription:
    values: dict[str, Any] = dict(id=sub_id, email="anna@example.org", lat=48.85, lon=2.35, radius_km=2.0,
                                  min_severity="warning", language="de", created_at=datetime.now(UTC))
    values.update(kw)
    sub = AreaSubscription(**values)
    store.create_area_subscription(sub)
    return sub


def test_the_confirm_link_shows_a_button_and_changes_nothing(server: LiveServer) -> None:
    pending(server.store)
    t = token("confirm", "pend-1")
    r = httpx.get(f"{server.url}/citizen/confirm", params={"token": t})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<html lang="de">' in r.text and "Bestätigen" in r.text
    assert 'action="/v1/citizen/subscriptions/confirm"' in r.text and f'value="{t}"' in r.text
    assert "<script" not in r.text and "style=" not in r.text and "<style" not in r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert server.store.get_area_subscription("pend-1").status == "pending"
    css = httpx.get(f"{server.url}/citizen/pages.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css") and "button" in css.text


@pytest.mark.parametrize(("make", "status", "words"), [
    (lambda: token("confirm", "pend-1", hours=-1), 400, "expired"),
    (lambda: token("unsubscribe", "pend-1"), 400, "another step"),
    (lambda: token("confirm", "pend-1", secret="another-secret-" + "x" * 30), 400, "not issued by this service"),
    (lambda: token("confirm", "pend-1")[:-3], 400, "incomplete"),
    (lambda: "", 400, "incomplete"),
    (lambda: token("confirm", "nobody"), 404, "does not exist"),
])
def test_the_confirm_page_explains_a_link_that_does_not_work(server: LiveServer, make: Any, status: int,
                                                            words: str) -> None:
    pending(server.store)
    r = httpx.get(f"{server.url}/citizen/confirm", params={"token": make()}, headers={"Accept-Language": "en-GB"})
    assert r.status_code == status and r.headers["content-type"].startswith("text/html")
    assert words in r.text and "<form" not in r.text
    assert server.store.get_area_subscription("pend-1").status == "pending"


def test_confirm_by_form_and_by_json(server: LiveServer) -> None:
    pending(server.store)
    r = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm",
                   data={"token": token("confirm", "pend-1"), "lang": "de"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Warnungen bestätigt" in r.text
    sub = server.store.get_area_subscription("pend-1")
    assert sub.status == "confirmed" and abs(sub.confirmed_at - datetime.now(UTC)) < timedelta(minutes=1)
    again = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm", json={"token": token("confirm", "pend-1")})
    assert again.status_code == 200 and again.json() == {"status": "confirmed"}
    assert server.store.get_area_subscription("pend-1").confirmed_at == sub.confirmed_at  # unchanged


def test_confirming_replaces_the_old_subscription_for_the_same_circle(server: LiveServer) -> None:
    pending(server.store, "old", status="confirmed", min_severity="critical")
    pending(server.store, "other-circle", status="confirmed", radius_km=9.0)
    pending(server.store, "new", min_severity="info")
    r = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm", json={"token": token("confirm", "new")})
    assert r.status_code == 200
    assert sorted(s.id for s in rows(server.store)) == ["new", "other-circle"]


@pytest.mark.parametrize(("make", "status", "kind"), [
    (lambda: token("confirm", "pend-1", hours=-1), 400, "link-expired"),
    (lambda: token("unsubscribe", "pend-1"), 400, "link-wrong_purpose"),
    (lambda: "garbage", 400, "link-invalid"),
    (lambda: None, 400, "link-invalid"),
    (lambda: token("confirm", "nobody"), 404, "not-found"),
])
def test_confirm_refusals_are_problems(server: LiveServer, make: Any, status: int, kind: str) -> None:
    pending(server.store)
    value = make()
    r = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm", json={} if value is None else {"token": value})
    assert r.status_code == status and r.headers["content-type"] == PROBLEM, r.text
    assert r.json()["type"] == f"urn:citysense:problem:{kind}" and r.json()["detail"]
    assert server.store.get_area_subscription("pend-1").status == "pending"
    form = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm", data={"token": value or ""})
    assert form.status_code == status and form.headers["content-type"].startswith("text/html")


def test_a_malformed_json_body_is_a_422(server: LiveServer) -> None:
    for body in (b"{oops", b'["token"]', b'{"token": 5}'):
        r = httpx.post(f"{server.url}/v1/citizen/subscriptions/confirm", content=body,
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and r.headers["content-type"] == PROBLEM


# ---------------------------------------------------------------------- unsubscribe


def test_the_unsubscribe_link_shows_a_button_and_changes_nothing(server: LiveServer) -> None:
    pending(server.store, status="confirmed", language="en")
    t = token("unsubscribe", "pend-1", hours=24 * 300)
    r = httpx.get(f"{server.url}/citizen/unsubscribe", params={"token": t})
    assert r.status_code == 200 and '<html lang="en">' in r.text and "Unsubscribe" in r.text
    assert re.search(r'<form method="post" action="/v1/citizen/unsubscribe">', r.text)
    assert server.store.get_area_subscription("pend-1") is not None
    gone = httpx.get(f"{server.url}/citizen/unsubscribe", params={"token": token("unsubscribe", "nobody")})
    assert gone.status_code == 200 and "Unsubscribe" in gone.text  # nothing tells whether it exists


def test_one_click_unsubscribe_and_the_same_answer_afterwards(server: LiveServer) -> None:
    pending(server.store, status="confirmed")
    url = f"{server.url}/v1/citizen/unsubscribe"
    t = token("unsubscribe", "pend-1", hours=24 * 300)
    # RFC 8058: the mail client POSTs this body to the List-Unsubscribe URL, the token in the URL.
    first = httpx.post(url, params={"token": t}, data={"List-Unsubscribe": "One-Click"})
    assert first.status_code == 200 and first.json() == {"status": "unsubscribed"}
    assert server.store.get_area_subscription("pend-1") is None and rows(server.store) == []
    again = httpx.post(url, params={"token": t}, data={"List-Unsubscribe": "One-Click"})
    unknown = httpx.post(url, params={"token": token("unsubscribe", "never-existed")},
                         files={"List-Unsubscribe": (None, "One-Click")})  # multipart, as RFC 8058 prefers
    assert (again.status_code, again.content) == (unknown.status_code, unknown.content) == (200, first.content)
    # The List-Unsubscribe header may name the page's URL: a one-click POST there works the same.
    pending(server.store, "p2", status="confirmed", radius_km=7.0)
    page_url = httpx.post(f"{server.url}/citizen/unsubscribe", params={"token": token("unsubscribe", "p2")},
                          data={"List-Unsubscribe": "One-Click"})
    assert page_url.status_code == 200 and page_url.content == first.content
    assert rows(server.store) == []


def test_unsubscribe_by_the_pages_form_and_json(server: LiveServer) -> None:
    pending(server.store, "a", status="confirmed")
    pending(server.store, "b", status="confirmed", radius_km=4.0)
    page = httpx.post(f"{server.url}/v1/citizen/unsubscribe", data={"token": token("unsubscribe", "a"), "lang": "de"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Abbestellt" in page.text
    r = httpx.post(f"{server.url}/citizen/unsubscribe", json={"token": token("unsubscribe", "b")})
    assert r.status_code == 200 and r.json() == {"status": "unsubscribed"}
    assert rows(server.store) == []


@pytest.mark.parametrize(("make", "kind"), [
    (lambda: token("unsubscribe", "pend-1", hours=-1), "link-expired"),
    (lambda: token("confirm", "pend-1"), "link-wrong_purpose"),
    (lambda: token("unsubscribe", "pend-1", secret="another-secret-" + "x" * 30), "link-invalid"),
    (lambda: "a.b", "link-invalid"),
])
def test_unsubscribe_refuses_links_it_did_not_issue(server: LiveServer, make: Any, kind: str) -> None:
    pending(server.store, status="confirmed")
    r = httpx.post(f"{server.url}/v1/citizen/unsubscribe", params={"token": make()},
                   data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 400 and r.json()["type"] == f"urn:citysense:problem:{kind}"
    page = httpx.get(f"{server.url}/citizen/unsubscribe", params={"token": make()})
    assert page.status_code == 400 and "<form" not in page.text
    assert server.store.get_area_subscription("pend-1") is not None
