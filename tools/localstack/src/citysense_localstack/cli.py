"""``citysense-stack``: run the local pipeline (what ``make up`` calls)."""

from __future__ import annotations

import argparse
import sys

from citysense_common.log import setup_logging
from citysense_common.settings import SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="citysense-stack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start broker, scorer, API, notifier and simulator; Ctrl-C stops all")
    watch = sub.add_parser("watch", help="print readings/s, distinct stations and invalid readings per second")
    watch.add_argument("--seconds", type=float, default=3600.0, help="how long to watch")
    args = parser.parse_args(argv)
    from citysense_localstack import stack

    if args.command == "watch":
        from citysense_localstack.watch import watch as run_watch

        try:
            run_watch(stack.load(), args.seconds)
        except KeyboardInterrupt:
            pass
        return 0

    try:
        settings = stack.load()
    except SettingsError as exc:
        print(f"citysense-stack: {exc}", file=sys.stderr)
        return 2
    setup_logging("stack", settings.log_level, settings.log_format)
    return stack.up(settings)


if __name__ == "__main__":
    raise SystemExit(main())
