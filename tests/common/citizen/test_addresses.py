"""Email addresses from the subscribe form: what is accepted, its normal form, and the messages for the rest."""

from __future__ import annotations

import pytest
from citysense_common.citizen.addresses import InvalidAddress, normalise_email


@pytest.mark.parametrize(("typed", "stored"), [
    ("  Anna.Berg@Example.ORG \n", "Anna.Berg@example.org"),
    ("a+alerts@mail.example.org", "a+alerts@mail.example.org"),
    ("o'brien@example.ie", "o'brien@example.ie"),
    ("jörg@münchen.example", None),  # a non-ASCII local part is refused (SMTPUTF8 is not assumed)
    ("ina@MÜNCHEN.example", "ina@xn--mnchen-3ya.example"),
])
def test_accepted_addresses_and_their_normal_form(typed: str, stored: str | None) -> None:
    if stored is None:
        with pytest.raises(InvalidAddress):
            normalise_email(typed)
    else:
        assert normalise_email(typed) == stored


@pytest.mark.parametrize(("typed", "message"), [
    ("", "Enter your email address"),
    ("   ", "Enter your email address"),
    ("no-at-sign.example.org", "like name@example.org"),
    ("@example.org", "like name@example.org"),
    ("anna@", "like name@example.org"),
    ("an na@example.org", "before the @"),
    ("anna..berg@example.org", "before the @"),
    (".anna@example.org", "before the @"),
    ("anna@localhost", "not a valid domain"),
    ("anna@-bad.example", "not a valid domain"),
    ("anna@exa_mple.org", "not a valid domain"),
    ("anna@1.2.3.4", "not a valid domain"),
    ("anna@example..org", "not a valid domain"),
    ("anna@example.org\r\nBcc: x@evil.example", "before the @|not a valid domain"),  # header injection
    ("a" * 65 + "@example.org", "before the @"),
    ("a@" + "b" * 250 + ".org", "too long"),
])
def test_refused_addresses_say_why(typed: str, message: str) -> None:
    with pytest.raises(InvalidAddress, match=message):
        normalise_email(typed)
