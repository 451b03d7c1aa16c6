"""values.schema.json rejects bad values (helm refuses to render them) and accepts every ci/*-values.yaml."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from chart_helpers import CHART, CI_VALUES, template_raw

SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))

BAD_VALUES = [
    ("unknown top-level key", {"replicas": 3}, "additional properties"),
    ("typo in a component key", {"notifier.replica": 2}, "additional properties"),
    ("readings topic below 6 partitions", {"kafka.topics.readings.partitions": 4}, "minimum"),
    ("bootstrap without port", {"kafka.bootstrapServers": "kafka"}, "bootstrapServers"),
    ("negative stations", {"simulator.stationsPerReplica": -1}, "minimum"),
    ("zero rate", {"simulator.rateHz": 0}, "rateHz"),
    ("stations as a string", {"simulator.stationsPerReplica": "many"}, "stationsPerReplica"),
    ("bad log level", {"config.logLevel": "TRACE"}, "logLevel"),
    ("root pods", {"podSecurityContext.runAsNonRoot": False}, "runAsNonRoot"),
    ("writable root filesystem", {"containerSecurityContext.readOnlyRootFilesystem": False}, "readOnlyRootFilesystem"),
    ("privilege escalation", {"containerSecurityContext.allowPrivilegeEscalation": True}, "allowPrivilegeEscalation"),
    ("added capabilities", {"containerSecurityContext.capabilities.add": ["NET_ADMIN"]}, "capabilities"),
    ("container without memory limit", {"alertApi.resources.limits.memory": None}, "memory"),
    ("bad cpu quantity", {"notifier.resources.requests.cpu": "lots"}, "cpu"),
    ("short API token", {"alertApi.auth.token": "secret"}, "token"),
    ("placeholder API token", {"alertApi.auth.token": "changeme"}, "token"),
    ("bad consistency", {"cassandra.consistency": "MOST"}, "consistency"),
    ("keyspace with a dash", {"cassandra.keyspace": "city-sense"}, "keyspace"),
    ("no cassandra hosts", {"cassandra.hosts": []}, "hosts"),
    ("nodePort out of range", {"alertApi.service.type": "NodePort", "alertApi.service.nodePort": 8080}, "nodePort"),
    ("bad service type", {"alertApi.service.type": "External"}, "type"),
    ("spark memory without unit", {"scorer.executor.memory": "1024"}, "memory"),
    ("bad cron", {"scorer.batch.schedule": "daily"}, "schedule"),
    ("object-storage checkpoint", {"scorer.checkpoint.location": "s3a://bucket"}, "additional properties"),
    ("bad access mode", {"scorer.checkpoint.persistentVolumeClaim.accessModes": ["ReadWriteSometimes"]}, "accessModes"),
    ("webhook network not a CIDR", {"alertApi.webhookAllowedNetworks": ["internal"]}, "webhookAllowedNetworks"),
    ("metric without range", {"config.metrics.metrics.co2": {"unit": "ppm", "profiles": {}}}, "range"),
    ("metric with negative std", {"config.metrics.metrics.co2": {"unit": "ppm", "range": {"min": 0, "max": 1},
                                                                 "profiles": {"city": {"mean": 1, "std": -1}}}}, "std"),
    ("image digest not sha256", {"scorer.image.digest": "latest"}, "digest"),
    ("HPA above 100%", {"alertApi.autoscaling.targetCPUUtilizationPercentage": 150}, "targetCPUUtilizationPercentage"),
]


@pytest.mark.parametrize(("values", "needle"), [(v, n) for _, v, n in BAD_VALUES], ids=[c for c, _, _ in BAD_VALUES])
def test_bad_values_are_rejected_by_helm(values, needle) -> None:
    result = template_raw(values=values)
    assert result.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert needle.lower() in result.stderr.lower(), result.stderr


def test_defaults_match_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(DEFAULTS, SCHEMA)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_ci_values_are_schema_valid(values_file) -> None:
    result = template_raw(values_file)
    assert result.returncode == 0, result.stderr


def test_schema_is_closed() -> None:
    """additionalProperties: false on every object with declared properties, except the few open by design."""
    open_by_design = {".config.metrics", ".podSecurityContext", ".containerSecurityContext",
                      ".scorer.podSecurityContext"}

    def walk(schema: dict, path: str) -> list[str]:
        found = []
        if schema.get("type") == "object" and "properties" in schema:
            if schema.get("additionalProperties") is not False and path not in open_by_design:
                found.append(path or "<root>")
            for key, child in schema["properties"].items():
                found += walk(child, f"{path}.{key}")
        return found

    assert walk(SCHEMA, "") == []
