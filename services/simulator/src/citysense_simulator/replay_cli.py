"""Wiring for ``citysense-simulator replay``: settings, mapping, producer, summary on stderr."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from citysense_common.log import setup_logging
from citysense_common.registry import RegistryError
from citysense_common.settings import SettingsError


def run_replay(args: argparse.Namespace) -> int:
    from citysense_simulator import settings as settings_mod
    from citysense_simulator.opensensemap_mapping import MappingError, load_mapper
    from citysense_simulator.replay import parse_speed, replay
    from citysense_simulator.replay_csv import ReplayError
    from citysense_simulator.runner import KafkaPublisher

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        speed = parse_speed(args.speed)
        if args.sort_chunk_rows < 1:
            raise ValueError("--sort-chunk-rows must be at least 1")
        settings = settings_mod.load()
        log = setup_logging("simulator", settings.log_level, settings.log_format)
        registry = settings.registry()
        mapper = load_mapper(registry, args.mapping)
        publisher = KafkaPublisher(settings)
        result = replay(args.file, publisher, registry, mapper, speed=speed, phenomenon=args.phenomenon,
                        unit=args.unit, time_column=args.time_column, stop=stop,
                        progress=None if args.no_progress else sys.stderr, chunk=args.sort_chunk_rows)
    except (SettingsError, RegistryError, MappingError, ReplayError, ValueError) as exc:
        print(f"citysense-simulator: {exc}", file=sys.stderr)
        return 2
    stats = result.stats
    span = f"{result.first:%Y-%m-%d %H:%M} .. {result.last:%Y-%m-%d %H:%M} UTC" if result.first else "no data"
    log.info("replayed %d readings from %d stations (%s) -> %s; %d rows read, %d empty values and %d unmapped "
             "values skipped", result.readings, len(result.stations), span, settings.readings_topic, stats.rows,
             stats.empty, stats.unmapped)
    if result.station_names:
        named = sorted(result.station_names.items())
        shown = "; ".join(f"{station} {name!r}" for station, name in named[:10])
        more = f"; and {len(named) - 10} more" if len(named) > 10 else ""
        log.info("station names: %s%s", shown, more)
    if result.undelivered or result.failed:
        log.error("%d readings undelivered, %d failed", result.undelivered, result.failed)
        return 1
    return 0
