"""``citysense-alert-api``: serve the API with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn
from citysense_common.log import setup_logging
from citysense_common.settings import SettingsError
from fastapi import FastAPI

from citysense_alert_api.app import create_app
from citysense_alert_api.auth import resolve_api_token
from citysense_alert_api.settings import build_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-alert-api", description="citysense alert API and citizen map")
    parser.add_argument("--host", help="listen address (default CITYSENSE_API_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default CITYSENSE_API_PORT or 8000)")
    args = parser.parse_args(argv)
    try:
        settings = build_settings()
        token, token_file = resolve_api_token(settings)
        if settings.citizen.enabled:  # the citizen routes need the link secret: refuse to start without it
            settings.citizen.resolve_secret(settings.env, settings.data_dir)
    except SettingsError as exc:
        print(f"citysense-alert-api: {exc}", file=sys.stderr)
        return 2
    log = setup_logging("alert-api", settings.log_level, settings.log_format)
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    if token_file is not None:
        # Development only (production refuses to start without a token): show it once so curl users can write.
        print(f"citysense-alert-api: API token for writes (also in {token_file}, mode 0600):\n  {token}",
              file=sys.stderr, flush=True)
    log.info("serving on http://%s:%d (env=%s, store=%s, workers=%d)", host, port, settings.env, settings.store,
             settings.api_workers)
    proxies = settings.api_forwarded_allow_ips.strip()
    common = {"host": host, "port": port, "log_level": settings.log_level.lower(), "access_log": False,
              "log_config": None, "limit_concurrency": settings.api_limit_concurrency,
              # X-Forwarded-For only from the configured proxies: anyone else could pick their own address.
              "proxy_headers": bool(proxies), "forwarded_allow_ips": proxies or None}
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings, token), **common)
    else:
        # Worker processes build their own app from the environment; hand them the token resolved here.
        os.environ["CITYSENSE_API_TOKEN"] = token
        uvicorn.run("citysense_alert_api.cli:app_from_environment", factory=True, workers=settings.api_workers,
                    **common)
    return 0


def app_from_environment() -> FastAPI:
    """App factory for uvicorn worker processes (``CITYSENSE_API_WORKERS`` > 1)."""
    settings = build_settings()
    setup_logging("alert-api", settings.log_level, settings.log_format)
    token, _ = resolve_api_token(settings)
    return create_app(settings, token)


if __name__ == "__main__":
    raise SystemExit(main())
