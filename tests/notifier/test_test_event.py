"""POST /v1/subscriptions/{id}/test travels API -> Kafka -> notifier -> receiver as a signed io.citysense.test."""

from __future__ import annotations

from citysense_alert_api.app import create_app
from citysense_alert_api.settings import build_settings
from cloudevents.v1.http import from_http
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

TOKEN = "integration-token-0123456789abcdef"  # noqa: S105 - a test token


def test_test_endpoint_delivers_signed_test_event(notifier, receiver) -> None:
    env = notifier.env
    settings = build_settings(kafka_bootstrap=env["CITYSENSE_KAFKA_BOOTSTRAP"], data_dir=env["CITYSENSE_DATA_DIR"],
                              alerts_topic=env["CITYSENSE_ALERTS_TOPIC"],
                              webhook_tests_topic=env["CITYSENSE_WEBHOOK_TESTS_TOPIC"])
    notifier.start()
    with TestClient(create_app(settings, TOKEN, store=notifier.store)) as api:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        created = api.post("/v1/subscriptions", json={"url": receiver.url}, headers=auth).json()
        r = api.post(f"/v1/subscriptions/{created['id']}/test", headers=auth)
        assert r.status_code == 202, r.text
        requested = r.json()
        (got,) = receiver.wait_for(1)
        Webhook(created["secret"]).verify(got.body, got.headers)
        ce = from_http(got.headers, got.body)
        assert ce["type"] == "io.citysense.test" and ce["id"] == requested["event_id"]
        assert got.headers["webhook-id"] == requested["webhook_id"]
        notifier.wait_delivery(created["id"], requested["event_id"], "delivered")
        log = api.get(requested["deliveries_url"], headers=auth).json()["items"]
        assert [(d["event_id"], d["status"], d["event_type"]) for d in log] == [
            (requested["event_id"], "delivered", "io.citysense.test")]
