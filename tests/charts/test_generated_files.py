"""Generated chart files are in sync with their sources (config/*.yaml, scripts/gen-schema.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml
from chart_helpers import CHART, REPO


def run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHART / "scripts" / script), "--check"], capture_output=True,
                          text=True, timeout=60)


def test_values_embed_the_repository_config() -> None:
    result = run("sync-config.py")
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    for key in ("metrics", "rules"):
        source = REPO / "config" / f"{key}.yaml"
        expected = yaml.safe_load(source.read_text(encoding="utf-8")) if source.exists() else {}
        assert values["config"][key] == expected, f"run charts/citysense/scripts/sync-config.py ({key} drifted)"


def test_drift_check_detects_a_stale_values_file(tmp_path, monkeypatch) -> None:
    """The checker itself fails on drift (so the test above can fail)."""
    sys.path.insert(0, str(CHART / "scripts"))
    try:
        import importlib.util

        spec = importlib.util.spec_from_file_location("sync_config", CHART / "scripts" / "sync-config.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    stale = tmp_path / "values.yaml"
    stale.write_text((CHART / "values.yaml").read_text(encoding="utf-8").replace("unit: hPa", "unit: bar"),
                     encoding="utf-8")
    monkeypatch.setattr(module, "VALUES", stale)
    monkeypatch.setattr(sys, "argv", ["sync-config.py", "--check"])
    assert module.main() == 1


def test_values_schema_is_generated() -> None:
    result = run("gen-schema.py")
    assert result.returncode == 0, result.stderr


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads((CHART / "files" / "dashboards" / "citysense.json").read_text(encoding="utf-8"))
    assert dashboard["uid"] == "citysense-pipeline"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("citysense_simulator_readings_produced_total", "kafka_consumergroup_lag",
                   "citysense_notifier_webhook_attempts_total", "citysense_api_requests_total"):
        assert metric in exprs
