"""Command line: ``citysense-scorer stream`` and ``citysense-scorer batch --day YYYY-MM-DD``."""

from __future__ import annotations

import argparse

from citysense_common.log import setup_logging

from citysense_scorer.settings import scorer_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-scorer", description="citysense scorer (Spark streaming)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stream", help="validate, score and store readings; raise alerts (runs until SIGTERM)")
    batch = sub.add_parser("batch", help="daily aggregates and yearly exceedance days for one UTC day")
    batch.add_argument("--day", required=True, help="UTC day, YYYY-MM-DD")
    batch.add_argument("--station", action="append", default=[], help="only this station (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "batch":
        from citysense_scorer.batch import main as batch_main

        return batch_main(["--day", args.day, *[a for s in args.station for a in ("--station", s)]])
    settings = scorer_settings()
    setup_logging("scorer", settings.log_level, settings.log_format)
    if args.command == "stream":
        from citysense_scorer.stream import run

        return run(settings)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
