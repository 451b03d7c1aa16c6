"""``citysense-simulator``: command-line entry point."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from citysense_common.log import setup_logging
from citysense_common.registry import RegistryError
from citysense_common.settings import SettingsError

from citysense_simulator.scenarios import ScenarioError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="citysense-simulator", description="citysense station simulator")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate stations and produce readings to Kafka",
                         description="Options override the CITYSENSE_* environment.")
    run.add_argument("--stations", type=int, help="stations in this instance (CITYSENSE_STATIONS, default 50)")
    run.add_argument("--rate-hz", type=float, help="readings per station per second (CITYSENSE_RATE_HZ, default 1)")
    run.add_argument("--profile", help="registry profile (CITYSENSE_PROFILE, default city)")
    run.add_argument("--instance-id", help="replica identity for stable station ids (default: host name)")
    run.add_argument("--scenario", action="append", default=None, metavar="NAME[:k=v,...]",
                     help="pollution, heatwave, flatline, stuck, spikes, dropout (repeatable; see docs)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--seed", type=int, help="random seed for a reproducible run")
    _add_opensensemap(sub)
    _add_replay(sub)
    return parser


def _add_opensensemap(sub: argparse._SubParsersAction) -> None:
    osm = sub.add_parser("opensensemap", help="publish live senseBox measurements from the openSenseMap API",
                         description="Discover senseBoxes in a bounding box and publish their new measurements "
                                     "(see docs/real-data.md). Kafka and data dir come from CITYSENSE_*.")
    osm.add_argument("--bbox", help="minLon,minLat,maxLon,maxLat (default CITYSENSE_BBOX, Berlin)")
    osm.add_argument("--phenomenon", action="append", default=None, metavar="TITLE",
                     help="openSenseMap phenomenon to discover boxes by (repeatable; default PM2.5, PM10, Temperatur)")
    osm.add_argument("--poll-interval", type=float, default=300.0, help="seconds between poll rounds (default 300)")
    osm.add_argument("--discovery-interval", type=float, default=3600.0,
                     help="seconds between box discoveries (default 3600)")
    osm.add_argument("--max-boxes", type=int, default=500, help="poll at most this many boxes (default 500)")
    osm.add_argument("--max-age", type=float, default=6 * 3600.0,
                     help="skip last measurements older than this many seconds (default 21600: offline boxes)")
    osm.add_argument("--api-url", default=None, help="openSenseMap API base URL (default https://api.opensensemap.org)")
    osm.add_argument("--mapping", help="extra phenomenon/unit mapping YAML (merged over config/opensensemap.yaml)")
    osm.add_argument("--state-file", help="sent-measurement state (default DATA_DIR/opensensemap/state.json)")
    osm.add_argument("--rounds", type=int, help="stop after this many poll rounds (default: run until stopped)")


def _add_replay(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("replay", help="replay a CSV export (openSenseMap descriptive statistics or plain readings)",
                         description="Publish a CSV file as readings in event-time order (see docs/real-data.md).")
    rep.add_argument("file", help="CSV file: openSenseMap /statistics/descriptive tidy export or station_id,ts,lat,"
                                  "lon,<metric>... table")
    rep.add_argument("--speed", default="max",
                     help="time compression: 3600 = one hour of data per second; 0 or 'max' = as fast as possible")
    rep.add_argument("--phenomenon", help="phenomenon of every row, for exports without a phenomenon column")
    rep.add_argument("--unit", help="unit of every row, for exports without a unit column")
    rep.add_argument("--time-column", metavar="NAME",
                     help="column holding the event time (default: a column named ts, time, time_start, createdAt, "
                          "..., else the one column whose values are ISO 8601 times)")
    rep.add_argument("--mapping", help="extra phenomenon/unit mapping YAML (merged over config/opensensemap.yaml)")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    rep.add_argument("--sort-chunk-rows", type=int, default=500_000,
                     help="values sorted in memory before spilling to temporary files (default 500000)")


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    names = {"stations": "stations", "rate_hz": "rate_hz", "profile": "profile", "instance_id": "instance_id",
             "scenario": "scenarios", "seed": "seed"}
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "opensensemap":
        from citysense_simulator.opensensemap_cli import run_opensensemap
        return run_opensensemap(args)
    if args.command == "replay":
        from citysense_simulator.replay_cli import run_replay
        return run_replay(args)
    from citysense_simulator import runner
    from citysense_simulator import settings as settings_mod
    from citysense_simulator.telemetry import SimulatorTelemetry

    try:
        settings = settings_mod.load(**_overrides(args))
        log = setup_logging("simulator", settings.log_level, settings.log_format)
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        telemetry = SimulatorTelemetry()
        telemetry.serve(settings.simulator_metrics_port)
        counts = runner.run(settings, stop, telemetry=telemetry, duration=args.duration)
    except (SettingsError, RegistryError, ScenarioError, ValueError) as exc:
        print(f"citysense-simulator: {exc}", file=sys.stderr)
        return 2
    if counts.failed:
        log.error("%d readings were not delivered", counts.failed)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
