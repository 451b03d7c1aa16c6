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
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    names = {"stations": "stations", "rate_hz": "rate_hz", "profile": "profile", "instance_id": "instance_id",
             "scenario": "scenarios", "seed": "seed"}
    return {field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    if counts is not None and counts.failed:
        log.error("%d readings were not delivered", counts.failed)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
