"""SMTP settings of the notifier (CITYSENSE_SMTP_*); email is off while ``smtp_host`` is unset."""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Literal

from citysense_common.settings import CommonSettings
from pydantic import Field, SecretStr, field_validator


class SmtpSettings(CommonSettings):
    smtp_host: str | None = Field(default=None, description="SMTP server for citizens' email; unset = no email")
    smtp_port: int | None = Field(default=None, ge=1, le=65535,
                                  description="unset = 465 with security tls, 587 with starttls, 25 with none")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        default="starttls", description="starttls: upgrade after connecting (port 587); tls: TLS from the first "
                                        "byte (port 465); none: plain text, only for a local development sink")
    smtp_ca_file: Path | None = Field(default=None,
                                      description="CA bundle to verify the server's certificate; unset = the system's")
    smtp_username: str | None = Field(default=None, description="log in with AUTH when set")
    smtp_password: SecretStr | None = Field(default=None, description="never logged")
    smtp_from_address: str = Field(default="citysense <alerts@localhost>",
                                   description="From of every email, e.g. Air quality <alerts@air.example.org>")
    smtp_timeout_s: float = Field(default=20.0, gt=0, le=300, description="deadline of one whole SMTP attempt")
    smtp_concurrency: int = Field(default=4, ge=1, le=64, description="SMTP connections open at once")

    @field_validator("smtp_ca_file")
    @classmethod
    def _smtp_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no file at {value}")
        return value

    @field_validator("smtp_from_address")
    @classmethod
    def _from_address(cls, value: str) -> str:
        name, address = parseaddr(value)
        if "@" not in address or any(c in value for c in "\r\n"):
            raise ValueError("expected an address such as alerts@example.org or 'Name <alerts@example.org>'")
        Address(display_name=name, addr_spec=address)  # raises on what a header cannot carry
        return value

    @property
    def smtp_port_or_default(self) -> int:
        return self.smtp_port or {"tls": 465, "starttls": 587, "none": 25}[self.smtp_security]
