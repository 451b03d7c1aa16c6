#!/usr/bin/env python3
"""Copy the repository's config/metrics.yaml, config/rules.yaml and config/cap.yaml into the chart's values.yaml.

The chart renders `config.metrics`, `config.rules` and `config.cap` into the citysense-config ConfigMap, so the defaults must be
the repository's registry and rules. This script rewrites the blocks between the `# BEGIN generated` / `# END
generated` markers in values.yaml; tests/charts/test_config_drift.py fails when they are out of date.

    .venv/bin/python charts/citysense/scripts/sync-config.py          # rewrite values.yaml
    .venv/bin/python charts/citysense/scripts/sync-config.py --check  # exit 1 when values.yaml is stale
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[1]
REPO = CHART.parents[1]
VALUES = CHART / "values.yaml"
SOURCES = {"metrics": REPO / "config" / "metrics.yaml", "rules": REPO / "config" / "rules.yaml",
           "cap": REPO / "config" / "cap.yaml"}
INDENT = "    "  # the blocks live under `config.<key>:` (2 spaces) so their content is indented by 4


def block(key: str) -> re.Pattern[str]:
    return re.compile(
        rf"(?P<head>^  # BEGIN generated from config/{key}\.yaml[^\n]*\n  {key}:)"
        rf"(?P<body>.*?)"
        rf"(?P<tail>^  # END generated from config/{key}\.yaml$)",
        re.S | re.M,
    )


def render(key: str) -> str:
    source = SOURCES[key]
    if not source.exists():
        return " {}\n"
    document = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    dumped = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=118, default_flow_style=False)
    return "\n" + "".join(INDENT + line if line.strip() else line for line in dumped.splitlines(keepends=True))


def synced(text: str) -> str:
    for key in SOURCES:
        pattern = block(key)
        if not pattern.search(text):
            raise SystemExit(f"sync-config: markers for config/{key}.yaml not found in {VALUES}")
        text = pattern.sub(lambda m, k=key: m["head"] + render(k) + m["tail"], text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether values.yaml is up to date")
    args = parser.parse_args()
    current = VALUES.read_text(encoding="utf-8")
    wanted = synced(current)
    if args.check:
        if wanted != current:
            print("charts/citysense/values.yaml is stale: run charts/citysense/scripts/sync-config.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        VALUES.write_text(wanted, encoding="utf-8")
        print("updated charts/citysense/values.yaml")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
