"""Command line: ``citysense-scorer stream`` and ``citysense-scorer batch [--day YYYY-MM-DD|yesterday]``."""

from __future__ import annotations

import argparse
import logging

from citysense_common.log import setup_logging

from citysense_scorer.settings import scorer_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-scorer", description="citysense scorer (Spark streaming)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stream", help="validate, score and store readings; raise alerts (runs until SIGTERM)")
    batch = sub.add_parser("batch", help="daily aggregates and yearly exceedance days for one UTC day")
    batch.add_argument("--day", default="yesterday", help="UTC day, YYYY-MM-DD, or yesterday (the default)")
    batch.add_argument("--station", action="append", default=[], help="only this station (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "batch":
        from citysense_scorer.batch.daily import main as batch_main

        return batch_main(["--day", args.day, *[a for s in args.station for a in ("--station", s)]])
    settings = scorer_settings()
    setup_logging("scorer", settings.log_level, settings.log_format)
    if args.command == "stream":
        from citysense_scorer.health.checkpoint import CheckpointMismatch, check_checkpoint
        from citysense_scorer.job.stream import run
        from citysense_scorer.source.kafka_datasource import CheckpointBeyondTopic

        try:
            # Before the broker and Spark: a checkpoint of the other health setting cannot be resumed (Spark would
            # only fail inside the first micro-batch, with an assertion about source counts).
            check_checkpoint(settings.checkpoint_dir)
        except CheckpointMismatch as exc:
            logging.getLogger("citysense_scorer").error("cannot start: %s", exc)
            return 2
        try:
            return run(settings)
        except CheckpointBeyondTopic as exc:
            logging.getLogger("citysense_scorer").error("cannot start: %s", exc)
            return 2
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
