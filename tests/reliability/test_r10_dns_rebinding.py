"""R10: a webhook host that rebinds to loopback between the SSRF check and the connection reaches nothing.

A DNS server in the test answers a public address for the subscriber's host name the first time and 127.0.0.1 every
time after (TTL 0). The notifier runs as a real process in production mode (no private network allowed) whose
system resolver is that server (tests/reliability/rebinding_dns.py hooks ``socket.getaddrinfo`` for ``*.test``
names; the notifier itself has no test switch). A receiver listens on loopback at the URL's port: the notifier must
connect to the address it checked (the public one) or refuse, never to the address a second lookup returns.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest
from citysense_common.testing.webhook_receiver import WebhookReceiver

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rebinding_dns  # noqa: E402

pytestmark = pytest.mark.slow

_spec = importlib.util.spec_from_file_location("notifier_fixtures",
                                               Path(__file__).resolve().parents[1] / "notifier" / "conftest.py")
nf = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = nf
_spec.loader.exec_module(nf)
notifier = nf.notifier

PUBLIC = "93.184.215.14"  # a public address: passes the check; nothing answers it from the test machine


def test_rebinding_to_loopback_reaches_nothing(notifier) -> None:  # noqa: ANN001
    dns = rebinding_dns.RebindingDNS(first=PUBLIC, then="127.0.0.1")
    loopback = WebhookReceiver()
    try:
        assert rebinding_dns.query_a(dns.address, "probe.rebind.test") == [PUBLIC]
        assert rebinding_dns.query_a(dns.address, "probe.rebind.test") == ["127.0.0.1"]
        sub = notifier.subscribe(f"http://hooks.rebind.test:{loopback.port}/hook")
        proc = notifier.start(rebinding_dns.notifier_command(sys.executable), CITYSENSE_ENV="production",
                              CITYSENSE_WEBHOOK_PORTS=str(loopback.port),  # only the address may be refused
                              CITYSENSE_TEST_REBINDING_DNS=dns.address, CITYSENSE_WEBHOOK_TIMEOUT_S="2",
                              CITYSENSE_WEBHOOK_BACKOFF_BASE_S="0.5", CITYSENSE_WEBHOOK_BACKOFF_MAX_S="1",
                              CITYSENSE_WEBHOOK_MAX_ATTEMPTS="4")
        event = nf.make_event("st-rebind")
        notifier.publish(event)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            d = notifier.store.get_delivery(sub.id, event.event_id)
            if d is not None and d.status == "dead" or loopback.received():
                break
            time.sleep(0.2)
        time.sleep(1)  # a late connection would still arrive
        asked = [ip for name, ip in dns.queries if name == "hooks.rebind.test"]
        assert loopback.received() == [], f"the webhook reached loopback; DNS answers {asked}\n{notifier.logs()}"
        assert asked and asked[0] == PUBLIC, f"the notifier never resolved through the test DNS\n{notifier.logs()}"
        assert proc.poll() is None, notifier.logs()
        d = notifier.store.get_delivery(sub.id, event.event_id)
        assert d is not None and d.status == "dead", d
        assert "loopback" in (d.last_error or ""), d  # once the name rebinds, the check refuses it
    finally:
        loopback.close()
        dns.close()
