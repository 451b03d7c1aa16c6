"""Print the third-party requirements of local projects, one per line (used by the service Dockerfiles).

    python project_deps.py /src/libs/common[cassandra] /src/services/scorer > /tmp/deps.txt

Reads each ``<dir>/pyproject.toml`` (``[extra,...]`` adds optional-dependency groups) and drops the citysense
projects themselves, so an image can install its dependencies in a layer that depends only on the pyproject files
and is reused until they change; the projects are installed afterwards with ``--no-deps``.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_SPEC = re.compile(r"^(?P<path>[^\[]+)(?:\[(?P<extras>[^\]]*)\])?$")


def requirements(spec: str) -> list[str]:
    match = _SPEC.match(spec)
    if match is None:
        raise SystemExit(f"not a project spec: {spec!r}")
    project = tomllib.loads((Path(match["path"]) / "pyproject.toml").read_text())["project"]
    reqs = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in filter(None, (match["extras"] or "").split(",")):
        if extra.strip() not in optional:
            raise SystemExit(f"{spec}: no optional dependency group {extra.strip()!r}")
        reqs += optional[extra.strip()]
    return reqs


def main(argv: list[str]) -> int:
    seen: list[str] = []
    for spec in argv:
        for req in requirements(spec):
            if not req.lower().startswith("citysense") and req not in seen:
                seen.append(req)
    print("\n".join(seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
