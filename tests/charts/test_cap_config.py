"""The CAP feed's configuration reaches the alert API in the cluster: config/cap.yaml in the ConfigMap it mounts."""

from __future__ import annotations

import yaml
from chart_helpers import CHART, find, pod_specs

REPO = CHART.parents[1]


def test_the_config_map_carries_cap_yaml_and_the_api_mounts_it(default_docs) -> None:  # noqa: ANN001
    config = find(default_docs, "ConfigMap", "citysense-config")
    assert yaml.safe_load(config["data"]["cap.yaml"]) == yaml.safe_load((REPO / "config" / "cap.yaml").read_text())
    api = pod_specs(default_docs)["Deployment/citysense-alert-api"]
    volumes = {v["name"]: v for v in api["volumes"]}
    mounted = {m["mountPath"]: m["name"] for c in api["containers"] for m in c.get("volumeMounts", [])}
    assert volumes[mounted["/etc/citysense"]]["configMap"]["name"] == config["metadata"]["name"]
