"""``citysense-notifier``: deliver alert events to webhook subscribers (and optionally Alertmanager)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from citysense_common.citizen.settings import load_citizen_settings
from citysense_common.kafka import BrokerUnavailable, wait_for_broker
from citysense_common.log import setup_logging
from citysense_common.settings import SettingsError
from citysense_common.store.factory import open_store

from citysense_notifier.health import serve
from citysense_notifier.metrics import NotifierMetrics
from citysense_notifier.service import EmailSetup, Notifier
from citysense_notifier.settings import NotifierSettings, build_settings


def email_setup(settings: NotifierSettings) -> EmailSetup | None:
    """Citizens' settings, link secret and warning texts when email is on (CITYSENSE_SMTP_HOST); raises
    SettingsError naming what to fix."""
    if not settings.smtp_host:
        return None
    citizen = load_citizen_settings()
    if not citizen.enabled:
        return None
    return EmailSetup(citizen=citizen, secret=citizen.resolve_secret(settings.env, settings.data_dir),
                      warnings=settings.public_warnings())


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="citysense-notifier", description=__doc__).parse_args(argv)
    try:
        settings = build_settings()
        email = email_setup(settings)
    except SettingsError as exc:
        print(f"citysense-notifier: {exc}", file=sys.stderr)
        return 2
    log = setup_logging("notifier", settings.log_level, settings.log_format)
    try:
        wait_for_broker(settings.bootstrap, timeout=60, extra=settings.kafka_options)
    except BrokerUnavailable as exc:
        log.error("%s", exc)
        return 1
    metrics = NotifierMetrics()
    store = open_store(settings)
    notifier = Notifier(settings, store, metrics, email)
    if settings.notifier_metrics_port:
        serve(settings.notifier_metrics_host, settings.notifier_metrics_port, metrics.registry,
              notifier.progress.stalled_for, settings.notifier_liveness_timeout_s)
        log.info("metrics and liveness on http://%s:%d/metrics and /healthz", settings.notifier_metrics_host,
                 settings.notifier_metrics_port)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, notifier.stop)
        await notifier.run()

    try:
        asyncio.run(run())
    finally:
        store.close()
    if notifier.fatal is not None:
        log.error("stopped by a fatal error: %r", notifier.fatal)
        return 1  # the orchestrator restarts it; what was not settled is replayed
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
