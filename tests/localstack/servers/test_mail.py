"""The local development mail sink `make up` runs without CITYSENSE_SMTP_HOST: a real SMTP server on loopback that
keeps every email as a file, says where, delivers nothing, and stops on SIGTERM."""

from __future__ import annotations

import email
import email.policy
import signal
import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

from citysense_localstack.servers.net import free_port, port_in_use


def test_every_email_is_kept_as_a_file(tmp_path: Path) -> None:
    port, mail = free_port(), tmp_path / "mail"
    log = tmp_path / "sink.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "citysense_localstack.servers.mail", "--port", str(port),
                                 "--dir", str(mail)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not port_in_use(port):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert f"local development mail sink on smtp://127.0.0.1:{port}" in log.read_text()
        assert "none is delivered" in log.read_text()
        for n in range(2):
            message = EmailMessage()
            message["From"], message["To"] = "alerts@localhost", f"citizen{n}@example.org"
            message["Subject"] = f"Entwarnung {n}"
            message.set_content("Die Warnung ist beendet.")
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                assert client.send_message(message) == {}
        files = sorted(mail.glob("*.eml"))
        assert len(files) == 2
        kept = email.message_from_bytes(files[1].read_bytes(), policy=email.policy.default)
        assert kept["To"] == "citizen1@example.org" and kept.get_content().strip() == "Die Warnung ist beendet."
        deadline = time.monotonic() + 10
        while f"-> {files[1]}" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "email to citizen1@example.org: 'Entwarnung 1'" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
