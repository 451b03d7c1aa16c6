"""Wiring for ``citysense-simulator opensensemap``: settings, client, mapping, state and producer."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from citysense_common.log import setup_logging
from citysense_common.registry import RegistryError
from citysense_common.settings import SettingsError

DEFAULT_PHENOMENA = ["PM2.5", "PM10", "Temperatur"]


def run_opensensemap(args: argparse.Namespace) -> int:
    from citysense_simulator import settings as settings_mod
    from citysense_simulator.opensensemap import OpenSenseMapSource
    from citysense_simulator.opensensemap_client import DEFAULT_API, OpenSenseMapClient
    from citysense_simulator.opensensemap_mapping import MappingError, load_mapper
    from citysense_simulator.opensensemap_state import SentState
    from citysense_simulator.runner import KafkaPublisher
    from citysense_simulator.stations import parse_bbox

    try:
        settings = settings_mod.load(**({"bbox": args.bbox} if args.bbox else {}))
        log = setup_logging("simulator", settings.log_level, settings.log_format)
        parse_bbox(settings.bbox)
        if args.poll_interval <= 0 or args.discovery_interval <= 0 or args.max_boxes <= 0:
            raise ValueError("--poll-interval, --discovery-interval and --max-boxes must be positive")
        mapper = load_mapper(settings.registry(), args.mapping)
        phenomena = args.phenomenon or DEFAULT_PHENOMENA
        for title in phenomena:
            if mapper.metric_for_title(title) is None:
                raise ValueError(f"--phenomenon {title!r} maps to no registry metric; add it to a --mapping file")
        state = SentState(Path(args.state_file) if args.state_file
                          else settings.data_dir / "opensensemap" / "state.json")
    except (SettingsError, RegistryError, MappingError, ValueError) as exc:
        print(f"citysense-simulator: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    client = OpenSenseMapClient(args.api_url or DEFAULT_API)
    publisher = KafkaPublisher(settings)
    source = OpenSenseMapSource(client, mapper, state, publisher, bbox=settings.bbox, phenomena=phenomena,
                                poll_interval=args.poll_interval, discovery_interval=args.discovery_interval,
                                max_boxes=args.max_boxes, max_age_s=args.max_age)
    try:
        published = source.run(stop, rounds=args.rounds)
    finally:
        client.close()
    log.info("stopped after publishing %d readings (%d API requests)", published, client.requests)
    return 1 if publisher.counts.failed else 0
