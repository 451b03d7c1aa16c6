"""Sending one email over SMTP: STARTTLS, TLS or plain, optional AUTH, one deadline per attempt.

The standard library's ``smtplib`` runs in worker threads (at most ``smtp_concurrency`` at once). An answer
decides what happens next: 2xx delivered; 4xx, a refused or lost connection and a timeout are worth another
attempt; 5xx (the server or the recipient refuses for good, or the credentials are wrong) is not.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from citysense_notifier.email.settings import SmtpSettings


@dataclass(frozen=True)
class SendResult:
    ok: bool
    permanent: bool = False  # True: another attempt will not help (5xx)
    code: int | None = None  # the SMTP reply code, when the server answered
    error: str | None = None


def tls_context(settings: SmtpSettings) -> ssl.SSLContext:
    """Verifies the server's certificate and name (system CAs, or CITYSENSE_SMTP_CA_FILE)."""
    return ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)


class SmtpTransport:
    def __init__(self, settings: SmtpSettings) -> None:
        assert settings.smtp_host is not None
        self.settings = settings
        self.host, self.port = settings.smtp_host, settings.smtp_port_or_default
        self._context = None if settings.smtp_security == "none" else tls_context(settings)
        self._slots = asyncio.Semaphore(settings.smtp_concurrency)

    def describe(self) -> str:
        auth = f", AUTH as {self.settings.smtp_username}" if self.settings.smtp_username else ""
        return f"{self.host}:{self.port} ({self.settings.smtp_security}{auth})"

    async def send(self, message: EmailMessage) -> SendResult:
        async with self._slots:
            return await asyncio.to_thread(self._send, message)

    def _send(self, message: EmailMessage) -> SendResult:
        s = self.settings
        timeout = s.smtp_timeout_s
        try:
            if s.smtp_security == "tls":
                client: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout, context=self._context)
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=timeout)
            with client:
                client.ehlo()
                if s.smtp_security == "starttls":
                    client.starttls(context=self._context)
                    client.ehlo()
                if s.smtp_username:
                    password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                    client.login(s.smtp_username, password)
                refused = client.send_message(message)
            if refused:  # one recipient per email: refused means that one
                code, reply = next(iter(refused.values()))
                return SendResult(False, permanent=code >= 500, code=code, error=_reply(code, reply))
            return SendResult(True, code=250)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return SendResult(False, permanent=code >= 500, code=code, error=_reply(code, reply))
        except smtplib.SMTPResponseException as exc:
            return SendResult(False, permanent=exc.smtp_code >= 500, code=exc.smtp_code,
                              error=_reply(exc.smtp_code, exc.smtp_error))
        except smtplib.SMTPNotSupportedError as exc:
            return SendResult(False, permanent=True, error=f"server does not support it: {exc}"[:300])
        except ssl.SSLError as exc:
            return SendResult(False, error=f"TLS: {exc.reason or exc}"[:300])
        except TimeoutError:
            return SendResult(False, error=f"Timeout: no answer within {timeout:g} s")
        except (OSError, smtplib.SMTPException) as exc:
            return SendResult(False, error=f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__)


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"SMTP {code}: {' '.join(text.split())}"[:300]
