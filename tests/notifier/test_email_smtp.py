"""Sending over SMTP to a real server on loopback: plain, STARTTLS with a self-signed certificate the client is
told to trust, AUTH with credentials, and what each failure means (5xx: give up; down or TLS not trusted: retry)."""

from __future__ import annotations

import asyncio
import socket
from email.message import EmailMessage

import pytest
from citysense_notifier.email.smtp import SmtpTransport
from citysense_notifier.settings import build_settings


def _message(to: str = "anna@example.org") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "citysense <alerts@city.example>"
    message["To"] = to
    message["Subject"] = "Luftverschmutzung (PM2,5): Gefährlich"
    message.set_content("Grüße — µg/m³", cte="quoted-printable")
    return message


def _send(**settings: object):  # noqa: ANN202
    transport = SmtpTransport(build_settings(smtp_timeout_s=5, **settings))
    return asyncio.run(transport.send(_message()))


def test_plain_delivery(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server()
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
    assert result.ok and result.code == 250
    (received,) = server.wait_for(1)
    assert server.envelopes == [("alerts@city.example", ["anna@example.org"])]
    assert str(received["Subject"]) == "Luftverschmutzung (PM2,5): Gefährlich"
    assert received.get_content().strip() == "Grüße — µg/m³"


def test_starttls_and_auth_with_a_trusted_self_signed_certificate(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(tls=True, users={"citysense": "s3cret pass"})
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls",
                   smtp_ca_file=server.ca_file, smtp_username="citysense", smtp_password="s3cret pass")  # noqa: S106 - the test server's
    assert result.ok, result
    server.wait_for(1)
    assert server.logins == ["citysense"]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # it is TLS, aiosmtpd cannot tell
def test_tls_from_the_first_byte(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(implicit_tls=True, users={"citysense": "pw"})
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="tls", smtp_ca_file=server.ca_file,
                   smtp_username="citysense", smtp_password="pw")  # noqa: S106 - the test server's
    assert result.ok, result
    server.wait_for(1)
    assert server.logins == ["citysense"]
    # A plain client gets nothing through a TLS port.
    plain = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
    assert not plain.ok and not plain.permanent and len(server.messages) == 1


def test_a_certificate_the_client_does_not_trust_is_not_used(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(tls=True)
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls")  # system CAs only
    assert not result.ok and not result.permanent
    assert result.error is not None and "TLS" in result.error and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert server.messages == []


def test_wrong_credentials_are_refused_for_good(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(tls=True, users={"citysense": "right"})
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls",
                   smtp_ca_file=server.ca_file, smtp_username="citysense", smtp_password="wrong")  # noqa: S106 - a wrong one
    assert not result.ok and result.permanent and result.code == 535
    assert "wrong" not in (result.error or "")  # the password never shows up in the error
    assert server.messages == []


def test_a_server_that_requires_auth_refuses_an_anonymous_sender(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(tls=True, users={"citysense": "right"})
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls",
                   smtp_ca_file=server.ca_file)
    assert not result.ok and result.permanent and result.code == 530


def test_a_refusing_server_is_a_permanent_failure(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(refuse="554 5.7.1 Message rejected as spam")
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
    assert not result.ok and result.permanent and result.code == 554
    assert result.error == "SMTP 554: 5.7.1 Message rejected as spam"


def test_a_temporary_refusal_is_retried(smtp_server) -> None:  # noqa: ANN001
    server = smtp_server(refuse="451 4.3.0 Try again later")
    result = _send(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
    assert not result.ok and not result.permanent and result.code == 451


def test_a_server_that_is_down_is_retried() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = _send(smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    assert not result.ok and not result.permanent and result.code is None
    assert result.error is not None and "ConnectionRefused" in result.error


def test_the_default_port_follows_the_security() -> None:
    assert build_settings(smtp_security="tls").smtp_port_or_default == 465
    assert build_settings(smtp_security="starttls").smtp_port_or_default == 587
    assert build_settings(smtp_security="none").smtp_port_or_default == 25
    assert build_settings(smtp_security="none", smtp_port=2525).smtp_port_or_default == 2525
