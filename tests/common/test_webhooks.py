"""Signing (checked with the standardwebhooks library) and the SSRF policy table, every spelling."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from citysense_common.webhooks import (
    UnsafeWebhookURL,
    check_webhook_url,
    generate_secret,
    parse_allowed_networks,
    parse_ipv4_any_spelling,
    signed_headers,
    verify,
    webhook_id_for,
)
from standardwebhooks.webhooks import Webhook

PUBLIC = "93.184.215.14"


async def _fake_resolver(host: str, port: int) -> list:
    table = {
        "public.example": [PUBLIC],
        "rebind.example": [PUBLIC, "10.0.0.7"],
        "v6-loop.example": ["::1"],
        "localhost": ["127.0.0.1", "::1"],
    }
    if host not in table:
        raise OSError("Name or service not known")
    return [ipaddress.ip_address(a) for a in table[host]]


def check(url: str, allowed: str = "") -> None:
    asyncio.run(check_webhook_url(url, parse_allowed_networks(allowed), resolver=_fake_resolver))


def test_signature_verifies_with_standardwebhooks_library() -> None:
    secret = generate_secret()
    body = b'{"specversion":"1.0","id":"e1"}'
    headers = signed_headers(secret, "msg_abc", body)
    assert Webhook(secret).verify(body, headers) is not None
    assert verify(secret, headers, body)
    assert not verify(secret, headers, body + b" ")
    assert not verify(generate_secret(), headers, body)


def test_webhook_id_is_deterministic_per_subscription_and_event() -> None:
    assert webhook_id_for("sub1", "ev1") == webhook_id_for("sub1", "ev1")
    assert webhook_id_for("sub1", "ev1") != webhook_id_for("sub2", "ev1")
    assert webhook_id_for("sub1", "ev1").startswith("msg_")


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7F.0.0.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0177.0000.0000.0001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("example.com", None),
        ("1.2.3.4.5", None),
        ("256.0.0.1", None),
        ("08.0.0.1", None),
    ],
)
def test_ipv4_spellings(spelling: str, expected: str | None) -> None:
    parsed = parse_ipv4_any_spelling(spelling)
    assert (None if parsed is None else str(parsed)) == expected


REFUSED = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.8.9.10:8080/x", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://v6-loop.example/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://0xa9fea9fe/", "metadata"),
    ("http://2852039166/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://metadata.google.internal/", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "reserved"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fd12:3456::1]/", "unique local"),
    ("http://[::ffff:127.0.0.1]/", "IPv6 spelling of 127.0.0.1"),
    ("http://[::ffff:7f00:1]/", "IPv6 spelling of 127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::127.0.0.1]/", "IPv6 spelling of 127.0.0.1"),
    ("http://[::10.0.0.1]/", "private"),
    ("http://[2002:7f00:1::]/", "IPv6 spelling of 127.0.0.1"),
    ("http://[64:ff9b::10.0.0.1]/", "private"),
    ("http://rebind.example/", "private"),
    ("ftp://public.example/", "http:// or https://"),
    ("file:///etc/passwd", "http:// or https://"),
    ("http://user:pw@public.example/", "user name or password"),
    ("http://nonexistent.invalid/", "cannot be resolved"),
    ("http:///nohost", "no host"),
    ("http://public.example:99999/", "cannot be parsed"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhookURL) as info:
        check(url)
    assert reason in str(info.value)


@pytest.mark.parametrize("url", ["http://public.example/hook", f"https://{PUBLIC}:8443/x", "http://[2606:4700::1]/"])
def test_public_accepted(url: str) -> None:
    check(url)


def test_allowed_networks_override() -> None:
    check("http://127.0.0.1:9000/hook", "127.0.0.0/8")
    check("http://2130706433:9000/hook", "127.0.0.0/8")
    check("http://[::ffff:127.0.0.1]/", "127.0.0.0/8")
    with pytest.raises(UnsafeWebhookURL):
        check("http://[::1]/", "127.0.0.0/8")  # v6 loopback is a different network
    with pytest.raises(UnsafeWebhookURL):
        check("http://169.254.169.254/", "127.0.0.0/8")


def test_allowed_networks_parse_errors_name_the_entry() -> None:
    with pytest.raises(ValueError, match="'nope'"):
        parse_allowed_networks("127.0.0.0/8,nope")
    assert parse_allowed_networks(" ") == ()


def test_ports_apply_to_public_addresses_not_to_allowed_networks() -> None:
    from citysense_common.webhooks import allowed_ports_for, parse_ports

    prod = allowed_ports_for("production", None)
    assert prod == {80, 443} and allowed_ports_for("development", None) is None
    assert allowed_ports_for("production", "443, 8443") == {443, 8443}
    with pytest.raises(ValueError, match="70000"):
        parse_ports("443,70000")

    def run(url: str, allowed: str = "") -> None:
        asyncio.run(check_webhook_url(url, parse_allowed_networks(allowed), resolver=_fake_resolver, ports=prod))

    run("https://public.example/x")
    run("http://public.example:80/x")
    with pytest.raises(UnsafeWebhookURL, match="ports 80, 443, not 8080"):
        run("http://public.example:8080/x")
    run("http://localhost:8080/x", allowed="127.0.0.0/8,::1/128")  # an allowed network: any port
