"""Email in the chart: off by default; when on, the SMTP settings, the password Secret and the citizens' link secret
and URL reach the notifier (and parse as its settings), the CA bundle is mounted where CITYSENSE_SMTP_CA_FILE points,
the alert API gets the same link secret, and the NetworkPolicy lets the notifier out to the SMTP port only."""

from __future__ import annotations

import base64

import pytest
from chart_helpers import env_of, find, render, template_raw

NOTIFIER = "citysense-notifier"
API = "citysense-alert-api"
PUBLIC_URL = "https://air.city.example"
SERVER = {"host": "smtp.city.example", "port": 587, "security": "starttls", "caSecret": "smtp-ca", "caKey": "ca.crt",
          "fromAddress": "Air quality <alerts@air.city.example>", "username": "citysense",
          "existingSecret": "smtp-credentials", "passwordKey": "pass"}


def container(docs: list[dict], deployment: str = NOTIFIER) -> dict:
    pod = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    return pod["containers"][0]


def smtp_rules(docs: list[dict], port: int) -> list[dict]:
    egress = find(docs, "NetworkPolicy", NOTIFIER)["spec"]["egress"]
    return [rule for rule in egress if {"port": port, "protocol": "TCP"} in rule.get("ports", [])]


def test_email_is_off_by_default(default_docs) -> None:  # noqa: ANN001
    env = env_of(container(default_docs))
    assert not any(name.startswith("CITYSENSE_SMTP_") for name in env)
    assert smtp_rules(default_docs, 587) == [] and smtp_rules(default_docs, 25) == []
    volumes = find(default_docs, "Deployment", NOTIFIER)["spec"]["template"]["spec"]["volumes"]
    assert "smtp-ca" not in {v["name"] for v in volumes}


def test_settings_and_secrets_reach_the_notifier(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    docs = render(values={"notifier.smtp": SERVER, "citizen.publicUrl": PUBLIC_URL})
    notifier = container(docs)
    env = env_of(notifier)
    assert env["CITYSENSE_SMTP_PASSWORD"] == {"secretKeyRef": {"name": "smtp-credentials", "key": "pass"}}
    assert env["CITYSENSE_CITIZEN_SECRET"] == {"secretKeyRef": {"name": "citysense-citizen-secret", "key": "secret"}}
    assert env["CITYSENSE_CITIZEN_PUBLIC_URL"] == "https://air.city.example"
    assert env["CITYSENSE_CITIZEN_MAIL_TOPIC"] == "citysense.citizen-mail"
    mount = next(m for m in notifier["volumeMounts"] if m["name"] == "smtp-ca")
    assert env["CITYSENSE_SMTP_CA_FILE"] == f"{mount['mountPath']}/ca.crt" and mount["readOnly"]
    pod = find(docs, "Deployment", NOTIFIER)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "smtp-ca")
    assert volume["secret"] == {"secretName": "smtp-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # The alert API checks the links the notifier signs: the same Secret and URL.
    api_env = env_of(container(docs, API))
    assert api_env["CITYSENSE_CITIZEN_SECRET"] == env["CITYSENSE_CITIZEN_SECRET"]
    assert api_env["CITYSENSE_CITIZEN_PUBLIC_URL"] == env["CITYSENSE_CITIZEN_PUBLIC_URL"]
    secret = find(docs, "Secret", "citysense-citizen-secret")
    assert len(base64.b64decode(secret["data"]["secret"])) >= 32

    # The rendered values are what the notifier's settings accept (the CA file stands in for the mounted one).
    from citysense_common.citizen.settings import load_citizen_settings
    from citysense_notifier.settings import build_settings

    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in env.items():
        if name.startswith(("CITYSENSE_SMTP_", "CITYSENSE_CITIZEN_")) and isinstance(value, str):
            monkeypatch.setenv(name, str(ca) if name == "CITYSENSE_SMTP_CA_FILE" else value)
    monkeypatch.setenv("CITYSENSE_SMTP_PASSWORD", "from-the-secret")
    settings = build_settings()
    assert (settings.smtp_host, settings.smtp_port_or_default, settings.smtp_security) == (
        "smtp.city.example", 587, "starttls")
    assert settings.smtp_from_address == "Air quality <alerts@air.city.example>"
    assert settings.smtp_username == "citysense" and settings.smtp_ca_file == ca
    citizen = load_citizen_settings()
    assert (citizen.public_url, citizen.mail_topic) == ("https://air.city.example", "citysense.citizen-mail")


def test_a_relay_without_tls_or_credentials() -> None:
    docs = render(values={"notifier.smtp": {"host": "postfix.mail", "port": 25, "security": "none",
                                            "fromAddress": "alerts@city.example", "caSecret": "ignored"},
                          "citizen.publicUrl": PUBLIC_URL})
    env = env_of(container(docs))
    assert (env["CITYSENSE_SMTP_HOST"], env["CITYSENSE_SMTP_PORT"], env["CITYSENSE_SMTP_SECURITY"]) == (
        "postfix.mail", "25", "none")
    assert "CITYSENSE_SMTP_USERNAME" not in env and "CITYSENSE_SMTP_PASSWORD" not in env
    assert "CITYSENSE_SMTP_CA_FILE" not in env


def test_an_existing_citizen_secret_is_used_instead_of_the_charts() -> None:
    docs = render(values={"notifier.smtp": SERVER, "citizen.publicUrl": PUBLIC_URL, "citizen.existingSecret": "links",
                          "citizen.secretKey": "key"})
    assert env_of(container(docs))["CITYSENSE_CITIZEN_SECRET"] == {"secretKeyRef": {"name": "links", "key": "key"}}
    assert not [d for d in docs if d.get("kind") == "Secret" and d["metadata"]["name"] == "citysense-citizen-secret"]


def test_network_policy_opens_the_smtp_port() -> None:
    (anywhere,) = smtp_rules(render(values={"notifier.smtp": SERVER, "citizen.publicUrl": PUBLIC_URL}), 587)
    assert "to" not in anywhere  # any address, on that port alone
    peers = [{"ipBlock": {"cidr": "203.0.113.25/32"}}]
    (narrowed,) = smtp_rules(render(values={"notifier.smtp": {**SERVER, "port": 465, "security": "tls"},
                                            "citizen.publicUrl": PUBLIC_URL, "networkPolicy.smtpEgressTo": peers}),
                             465)
    assert narrowed["to"] == peers


@pytest.mark.parametrize(("key", "value"), [("security", "ssl"), ("host", "smtp://x"), ("port", 0),
                                            ("fromAddress", "no-at-sign")])
def test_the_schema_refuses_bad_values(key: str, value: object) -> None:
    result = template_raw(values={"notifier.smtp": {**SERVER, key: value}, "citizen.publicUrl": PUBLIC_URL})
    assert result.returncode != 0 and f"/notifier/smtp/{key}" in result.stderr, result.stderr


def test_email_links_to_a_loopback_address_are_refused() -> None:
    result = template_raw(values={"notifier.smtp": SERVER})  # citizen.publicUrl left at http://127.0.0.1:8000
    assert result.returncode != 0 and "citizen.publicUrl" in result.stderr and "loopback" in result.stderr
