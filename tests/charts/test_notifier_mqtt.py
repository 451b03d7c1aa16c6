"""MQTT in the chart: off by default; when on, its settings and secrets reach the notifier (and parse as its settings),
the CA bundle is mounted where CITYSENSE_MQTT_CA_FILE points, and the NetworkPolicy lets the notifier out to the
broker's port only."""

from __future__ import annotations

import pytest
from chart_helpers import env_of, find, render, template_raw
from citysense_common.contract import AlertKind, Severity

NOTIFIER = "citysense-notifier"
BROKER = {"host": "mqtt.city.example", "port": 8883, "tls": True, "caSecret": "mqtt-ca", "caKey": "ca.crt",
          "existingSecret": "mqtt-credentials", "usernameKey": "user", "passwordKey": "pass",
          "topicPrefix": "city/air", "public": {"threshold": ["critical"]}}


def container(docs: list[dict]) -> dict:
    pod = find(docs, "Deployment", NOTIFIER)["spec"]["template"]["spec"]
    (notifier,) = [c for c in pod["containers"] if c["name"] == "notifier"]
    return notifier


def mqtt_rules(docs: list[dict], port: int) -> list[dict]:
    egress = find(docs, "NetworkPolicy", NOTIFIER)["spec"]["egress"]
    return [rule for rule in egress if {"port": port, "protocol": "TCP"} in rule.get("ports", [])]


def test_mqtt_is_off_by_default(default_docs) -> None:  # noqa: ANN001
    env = env_of(container(default_docs))
    assert not any(name.startswith("CITYSENSE_MQTT_") for name in env)
    assert mqtt_rules(default_docs, 8883) == [] and mqtt_rules(default_docs, 1883) == []
    volumes = find(default_docs, "Deployment", NOTIFIER)["spec"]["template"]["spec"]["volumes"]
    assert "mqtt-ca" not in {v["name"] for v in volumes}


def test_settings_and_secrets_reach_the_notifier(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    docs = render(values={"notifier.mqtt": BROKER})
    notifier = container(docs)
    env = env_of(notifier)
    assert env["CITYSENSE_MQTT_USERNAME"] == {"secretKeyRef": {"name": "mqtt-credentials", "key": "user"}}
    assert env["CITYSENSE_MQTT_PASSWORD"] == {"secretKeyRef": {"name": "mqtt-credentials", "key": "pass"}}
    mount = next(m for m in notifier["volumeMounts"] if m["name"] == "mqtt-ca")
    assert env["CITYSENSE_MQTT_CA_FILE"] == f"{mount['mountPath']}/ca.crt" and mount["readOnly"]
    pod = find(docs, "Deployment", NOTIFIER)["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "mqtt-ca")
    assert volume["secret"] == {"secretName": "mqtt-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}

    # The rendered values are what the notifier's settings accept (the CA file stands in for the mounted one).
    from citysense_notifier.settings import build_settings

    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for name, value in env.items():
        if name.startswith("CITYSENSE_MQTT_") and isinstance(value, str):
            monkeypatch.setenv(name, str(ca) if name == "CITYSENSE_MQTT_CA_FILE" else value)
    monkeypatch.setenv("CITYSENSE_MQTT_USERNAME", "citysense")
    monkeypatch.setenv("CITYSENSE_MQTT_PASSWORD", "from-the-secret")
    settings = build_settings()
    assert (settings.mqtt_host, settings.mqtt_port_or_default, settings.mqtt_tls) == ("mqtt.city.example", 8883, True)
    assert settings.mqtt_topic_prefix == "city/air"
    assert settings.mqtt_public == {AlertKind.THRESHOLD: [Severity.CRITICAL]}


def test_anonymous_plain_broker_without_ca() -> None:
    docs = render(values={"notifier.mqtt": {"host": "mosquitto.iot", "port": 1883, "tls": False,
                                            "topicPrefix": "citysense", "caSecret": "ignored-without-tls"}})
    env = env_of(container(docs))
    assert (env["CITYSENSE_MQTT_HOST"], env["CITYSENSE_MQTT_PORT"], env["CITYSENSE_MQTT_TLS"]) == (
        "mosquitto.iot", "1883", "false")
    assert "CITYSENSE_MQTT_USERNAME" not in env and "CITYSENSE_MQTT_CA_FILE" not in env
    assert "CITYSENSE_MQTT_PUBLIC" not in env  # the notifier's default: the CAP feed's kinds and severities


def test_network_policy_opens_the_broker_port() -> None:
    (anywhere,) = mqtt_rules(render(values={"notifier.mqtt": BROKER}), 8883)
    assert "to" not in anywhere  # any address, on that port alone
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "iot"}},
              "podSelector": {"matchLabels": {"app": "mosquitto"}}}]
    (narrowed,) = mqtt_rules(render(values={"notifier.mqtt": {**BROKER, "port": 1883, "tls": False},
                                            "networkPolicy.mqttEgressTo": peers}), 1883)
    assert narrowed == {"ports": [{"port": 1883, "protocol": "TCP"}], "to": peers}


@pytest.mark.parametrize(("values", "complaint"), [
    ({"notifier.mqtt.host": "mqtts://broker"}, "host"),
    ({"notifier.mqtt.topicPrefix": "city/+/air"}, "topicPrefix"),
    ({"notifier.mqtt.public": {"sensor_faults": ["critical"]}}, "sensor_faults"),
    ({"notifier.mqtt.public": {"threshold": ["severe"]}}, "public"),
    ({"notifier.mqtt.port": 0}, "port"),
])
def test_the_schema_rejects_bad_mqtt_values(values: dict, complaint: str) -> None:
    result = template_raw(values=values)
    assert result.returncode != 0 and complaint in result.stderr, result.stderr
