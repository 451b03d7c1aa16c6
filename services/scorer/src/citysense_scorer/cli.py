"""Command line: ``citysense-scorer stream`` and ``citysense-scorer batch [--day YYYY-MM-DD|yesterday]``.

The entry point: the only place that reads the environment. It builds the settings, the metric registry and the
rules once and passes them down.
"""

from __future__ import annotations

import argparse
import logging

from citysense_common.log import setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-scorer", description="citysense scorer (Spark streaming)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stream", help="validate, score and store readings; raise alerts (runs until SIGTERM)")
    batch = sub.add_parser("batch", help="daily aggregates and yearly exceedance days for one UTC day")
    batch.add_argument("--day", default="yesterday", help="UTC day, YYYY-MM-DD, or yesterday (the default)")
    batch.add_argument("--station", action="append", default=[], help="only this station (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "batch":
        return run_batch(batch, args.day, args.station)
    if args.command == "stream":
        return run_stream()
    return 2


def run_batch(parser: argparse.ArgumentParser, day_text: str, stations: list[str]) -> int:
    from citysense_scorer.batch.daily import resolve_day, run
    from citysense_scorer.batch.settings import batch_settings

    try:
        day = resolve_day(day_text)
    except ValueError:
        parser.error(f"--day {day_text!r} is not a date like 2026-01-31 (or yesterday)")
    settings = batch_settings()
    setup_logging("scorer-batch", settings.log_level, settings.log_format)
    return run(settings, day, stations)


def run_stream() -> int:
    from citysense_scorer.alerts.rules import load_rules
    from citysense_scorer.health.checkpoint import CheckpointMismatch, check_checkpoint
    from citysense_scorer.job.stream import run
    from citysense_scorer.settings import scorer_settings
    from citysense_scorer.source.offsets import KafkaCheckpointError

    settings = scorer_settings()
    setup_logging("scorer", settings.log_level, settings.log_format)
    try:
        # Before the broker and Spark: a checkpoint of the other health setting cannot be resumed (Spark would
        # only fail inside the first micro-batch, with an assertion about source counts).
        check_checkpoint(settings.checkpoint_dir, settings.health_enabled)
    except CheckpointMismatch as exc:
        logging.getLogger("citysense_scorer").error("cannot start: %s", exc)
        return 2
    registry = settings.registry()
    rules = load_rules(settings.rules_path, registry)
    try:
        return run(settings, registry, rules)
    except KafkaCheckpointError as exc:
        logging.getLogger("citysense_scorer").error("cannot start: %s", exc)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
