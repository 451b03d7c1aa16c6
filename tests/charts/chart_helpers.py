"""Helpers for the chart and cluster-manifest tests (conftest.py puts this folder on sys.path).

helm comes from .venv/bin (scripts/bootstrap.d/40-helm); renders are cached per values.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "citysense"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "citysense"
NAMESPACE = "citysense"
KUBERNETES_VERSION = "1.34.0"  # the version the chart targets (kind node image v1.34)


def helm_binary() -> str:
    candidates = [REPO / ".venv" / "bin" / "helm", os.environ.get("HELM"), shutil.which("helm")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "helm is not installed: run `scripts/bootstrap.d/40-helm` (or `make env`), which puts helm into .venv/bin",
        pytrace=False,
    )


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed:\n{result.stderr}", pytrace=False)
    return result


def _set_args(values: dict[str, object] | None) -> list[str]:
    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def template_raw(
    *files: Path, values: dict[str, object] | None = None, release: str = RELEASE
) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE, "--kube-version", KUBERNETES_VERSION]
    for file in files:
        args += ["-f", str(file)]
    return helm(*args, *_set_args(values), check=False)


@functools.lru_cache(maxsize=64)
def _render_cached(files: tuple[str, ...], values_json: str, release: str) -> tuple[dict, ...]:
    result = template_raw(*map(Path, files), values=json.loads(values_json), release=release)
    if result.returncode != 0:
        pytest.fail(f"helm template failed:\n{result.stderr}", pytrace=False)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(*files: Path, values: dict[str, object] | None = None, release: str = RELEASE) -> list[dict]:
    """Rendered documents (deep copies are not needed: tests must not mutate them)."""
    return list(_render_cached(tuple(map(str, files)), json.dumps(values or {}, sort_keys=True), release))


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    matches = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    """Pod specs of every workload, keyed by "<Kind>/<name>"."""
    specs = {}
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            specs[f"Pod/{doc['metadata']['name']}"] = doc["spec"]
    return specs


def env_of(container: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}
