"""The committed JSON Schemas match the models, and the models' output validates against them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from citysense_common.contract import Reading
from citysense_common.contract_export import SCHEMAS, render

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def test_committed_schemas_have_not_drifted() -> None:
    for name, model in SCHEMAS.items():
        committed = (CONTRACTS / name).read_text(encoding="utf-8")
        assert committed == render(model), f"contracts/{name} is stale: run `make contracts`"


def test_reading_schema_accepts_model_output_and_rejects_bad_ids() -> None:
    schema = json.loads((CONTRACTS / "reading.v1.schema.json").read_text(encoding="utf-8"))
    good = json.loads(Reading(schema_version=1, station_id="a.b-c_1", ts="2026-01-01T00:00:00Z", seq=0,
                              metrics={"pm10": 3.0}).to_json())
    jsonschema.validate(good, schema)
    bad = {**good, "station_id": "no/slash"}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as exc:
        assert "station_id" in str(exc.path) or "pattern" in exc.message
    else:
        raise AssertionError("schema accepted an invalid station id")
