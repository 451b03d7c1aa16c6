"""Email addresses citizens type into the subscribe form: a conservative syntax check and one normal form.

Only the syntax is checked here (no DNS lookup: the confirmation email is the real test). The normal form strips
surrounding space and lower-cases the domain (domains are case-insensitive; local parts formally are not), so the
same address typed twice maps to one store key, which per-address rate limits and duplicate checks rely on.
"""

from __future__ import annotations

import re

MAX_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


class InvalidAddress(ValueError):
    """Not an email address this service sends to; the message is for the citizen who typed it."""


def normalise_email(value: str) -> str:
    """The address in its stored form; raises InvalidAddress with a message a citizen understands."""
    address = value.strip()
    if not address:
        raise InvalidAddress("Enter your email address.")
    if len(address) > MAX_LENGTH:
        raise InvalidAddress(f"This email address is too long (at most {MAX_LENGTH} characters).")
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise InvalidAddress("Enter an email address like name@example.org.")
    if len(local) > 64 or not _LOCAL.fullmatch(local):
        raise InvalidAddress("The part before the @ contains characters an email address cannot have here "
                             "(letters, digits, . _ + - and a few others; no spaces).")
    try:
        domain = domain.lower().encode("idna").decode("ascii")  # internationalised domains in their ASCII form
    except UnicodeError:
        raise InvalidAddress("The part after the @ is not a valid domain name.") from None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise InvalidAddress("The part after the @ is not a valid domain name (like example.org).")
    return f"{local}@{domain}"
