"""A local development mail sink: an SMTP server on loopback that delivers nothing and keeps every email as a file.

``make up`` runs it when no real SMTP server is configured (CITYSENSE_SMTP_HOST unset), so a new user sees the
confirmation and warning emails the notifier sends: each is written to ``<dir>/<time>-<n>.eml`` (open it with any
mail program, or read it as text) and logged with its recipient and subject.

    python -m citysense_localstack.servers.mail --port 8025 --dir .citysense/mail
"""

from __future__ import annotations

import argparse
import email
import email.policy
import logging
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.controller import Controller

log = logging.getLogger("citysense.mail_sink")


class MailSink:
    """aiosmtpd handler: every accepted message becomes one ``.eml`` file under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook
        with self._lock:
            self._count += 1
            number = self._count
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"{stamp}-{number:04d}.eml"
        path.write_bytes(envelope.original_content)
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        log.info("email to %s: %r -> %s", ", ".join(envelope.rcpt_tos), str(parsed.get("Subject", "")), path)
        return "250 2.0.0 kept by the local development mail sink (not delivered)"


def start(directory: Path, port: int, host: str = "127.0.0.1") -> Controller:
    controller = Controller(MailSink(directory), hostname=host, port=port)
    controller.start()
    return controller


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-mail-sink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8025)
    parser.add_argument("--dir", type=Path, required=True, help="where the emails are written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s mail-sink %(levelname)s %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's line per SMTP command
    controller = start(args.dir.resolve(), args.port)
    log.info("local development mail sink on smtp://127.0.0.1:%d: every email is kept under %s, none is delivered",
             args.port, args.dir.resolve())
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
