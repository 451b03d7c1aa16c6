"""Write the contract's JSON Schemas to ``contracts/`` (``make contracts``); a test fails when they drift."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import BaseModel

from citysense_common.contract import AlertEvent, DeadLetter, Reading
from citysense_common.paths import repo_root

SCHEMAS: dict[str, type[BaseModel]] = {
    "reading.v1.schema.json": Reading,
    "dead-letter.v1.schema.json": DeadLetter,
    "alert-event.v1.schema.json": AlertEvent,
}


def render(model: type[BaseModel]) -> str:
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model.model_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    root = repo_root()
    parser.add_argument("--out", type=Path, default=(root / "contracts") if root else Path("contracts"))
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed schema differs")
    args = parser.parse_args(argv)
    stale = []
    for name, model in SCHEMAS.items():
        path = args.out / name
        text = render(model)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print("out of date (run `make contracts`): " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
