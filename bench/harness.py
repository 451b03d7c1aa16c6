"""Shared benchmark plumbing: figures, machine facts, progress lines, JSON results and the summary table.

Results go to ``bench/results/<name>.json``; ``bench/results/SUMMARY.md`` is rebuilt from every JSON there, so the
table always shows the newest run of each figure with the machine it ran on.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    id: str  # P1..P7
    name: str
    value: float
    unit: str
    target: str  # human-readable target, e.g. ">= 200000"
    meets: bool | None  # None: no target or not comparable
    detail: dict | None = None


def machine() -> dict:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(mem_kb / 1024 / 1024, 1), "python": sys.version.split()[0],
            "platform": platform.platform(), "load_avg_1m_at_start": os.getloadavg()[0]}


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def health_off() -> bool:
    """A run with station health switched off (``CITYSENSE_HEALTH_ENABLED=false``; it is on by default), read by
    the scorer's own settings so the bench and the stack agree on every spelling of false."""
    from citysense_common.settings import load_settings
    from citysense_scorer.health.settings import HealthSettings

    return not load_settings(HealthSettings).health_enabled


def write_result(name: str, figures: list[Figure], notes: str = "") -> Path:
    """``bench/results/<name>.json``; a health-off run is kept beside the default one (``<name>_health_off``, figures
    marked), so the summary shows what station health costs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    if health_off():
        name += "_health_off"
        figures = [replace(f, name=f"{f.name} [health off]") for f in figures]
    doc = {"name": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(),
           "figures": [asdict(f) for f in figures], "notes": notes}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    write_summary()
    return path


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def write_summary() -> Path:
    rows = []
    for path in sorted(RESULTS.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        m = doc["machine"]
        for f in doc["figures"]:
            verdict = {True: "yes", False: "**no**", None: "—"}[f["meets"]]
            rows.append(f"| {f['id']} | {f['name']} | {_fmt(f['value'])} {f['unit']} | {f['target']} | {verdict} | "
                        f"{m['cores']} cores, {m['memory_gib']} GiB, load {m['load_avg_1m_at_start']:.1f} | "
                        f"{doc['recorded_at']} |")
    rows.sort()
    text = "\n".join([
        "# Benchmark results", "",
        "Written by `make bench` (see `bench/README.md`). One row per figure, newest run of each.", "",
        "| id | figure | value | target | meets | machine | recorded |",
        "|---|---|---|---|---|---|---|", *rows, ""])
    path = RESULTS / "SUMMARY.md"
    path.write_text(text, encoding="utf-8")
    return path
