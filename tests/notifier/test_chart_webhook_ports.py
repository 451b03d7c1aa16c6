"""The ports the notifier delivers webhooks to are the ports the chart's NetworkPolicy lets it reach.

The NetworkPolicy opens public addresses on `networkPolicy.webhookPorts` only; a notifier accepting other ports would
dead-letter such subscribers with a connect timeout nobody can explain. The rendered Deployment's environment is
fed to the notifier's own settings and URL check, and compared with the rendered policy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from pathlib import Path

import pytest
from citysense_common.webhooks import UnsafeWebhookURL, check_webhook_url
from citysense_notifier.settings import NotifierSettings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "charts"))
from chart_helpers import env_of, find, render  # noqa: E402

PUBLIC = "93.184.215.14"


async def _public(host: str, port: int) -> list:
    return [ipaddress.ip_address(PUBLIC)]


def _policy_ports(docs: list[dict]) -> set[int]:
    policy = find(docs, "NetworkPolicy", "citysense-notifier")
    public = [rule for rule in policy["spec"]["egress"]
              if any(peer.get("ipBlock", {}).get("cidr") == "0.0.0.0/0" for peer in rule.get("to", []))]
    assert len(public) == 1, public
    return {p["port"] for p in public[0]["ports"]}


def _notifier_settings(docs: list[dict]) -> NotifierSettings:
    deployment = find(docs, "Deployment", "citysense-notifier")
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "notifier"]
    env = {k.removeprefix("CITYSENSE_").lower(): v for k, v in env_of(container).items()
           if k.startswith("CITYSENSE_") and isinstance(v, str)}
    keep = {"env", "webhook_ports", "webhook_allowed_networks"}
    return NotifierSettings(**{k: v for k, v in env.items() if k in keep})


def _accepted(settings: NotifierSettings, port: int) -> bool:
    try:
        asyncio.run(check_webhook_url(f"https://hooks.example:{port}/x", settings.allowed_networks(),
                                      resolver=_public, ports=settings.webhook_ports_allowed()))
    except UnsafeWebhookURL:
        return False
    return True


@pytest.mark.parametrize("ports", [None, [443], [443, 8443]])
def test_notifier_ports_match_the_network_policy(ports: list[int] | None) -> None:
    docs = render(values=None if ports is None else {"networkPolicy.webhookPorts": ports})
    allowed = _policy_ports(docs)
    settings = _notifier_settings(docs)
    assert settings.env == "production"
    for port in sorted(allowed | {80, 443, 8080, 8443, 9000}):
        assert _accepted(settings, port) == (port in allowed), f"port {port}: policy lets out {sorted(allowed)}"
