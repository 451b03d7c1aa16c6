#!/usr/bin/env python3
"""Generate charts/citysense/values.schema.json (the schema is written as Python for readability).

    .venv/bin/python charts/citysense/scripts/gen-schema.py          # rewrite values.schema.json
    .venv/bin/python charts/citysense/scripts/gen-schema.py --check  # exit 1 when it is stale (a test runs this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "values.schema.json"


def obj(properties: dict, required: list[str] | None = None, **extra) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


def free(desc: str = "") -> dict:
    return {"type": "object", **({"description": desc} if desc else {})}


STR = {"type": "string"}
BOOL = {"type": "boolean"}
DNS1123 = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
TOPIC = {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,249}$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
QUANTITY = {"oneOf": [{"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"},
                      {"type": "number", "minimum": 0}]}
SPARK_MEMORY = {"type": "string", "pattern": r"^[0-9]+[kmgt]$", "description": "JVM size such as 512m or 2g"}
CIDR = {"type": "string", "pattern": r"^[0-9a-fA-F:.]+/[0-9]{1,3}$"}
LIST_OBJ = {"type": "array", "items": {"type": "object"}}
ALERT_KINDS = ["threshold", "outlier", "sensor_fault", "station_offline", "forecast"]  # contract.AlertKind
SEVERITIES = ["info", "warning", "critical"]  # contract.Severity
RESOURCES = obj(
    {
        "requests": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}, ["cpu", "memory"]),
        "limits": obj({"cpu": QUANTITY, "memory": QUANTITY, "ephemeral-storage": QUANTITY}, ["memory"]),
    },
    ["requests", "limits"],
    description="requests and limits are required: every container is sized",
)
IMAGE = obj(
    {
        "repository": {"type": "string", "minLength": 1, "pattern": r"^[a-z0-9]+([._/-][a-z0-9]+)*$"},
        "tag": {"type": "string", "pattern": r"^$|^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"},
        "digest": {"type": "string", "pattern": r"^$|^sha256:[a-f0-9]{64}$"},
        "pullPolicy": {"enum": ["", "Always", "IfNotPresent", "Never"]},
    },
    ["repository"],
)
HPA = obj(
    {
        "enabled": BOOL,
        "minReplicas": {"type": "integer", "minimum": 1},
        "maxReplicas": {"type": "integer", "minimum": 1},
        "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1, "maximum": 100},
    },
    ["enabled", "minReplicas", "maxReplicas", "targetCPUUtilizationPercentage"],
)
SCHEDULING = {"nodeSelector": {"type": "object", "additionalProperties": STR}, "tolerations": LIST_OBJ,
              "affinity": free()}
POD_EXTRAS = {"extraEnv": {"type": "array", "items": obj({"name": STR, "value": STR, "valueFrom": free()}, ["name"])},
              "podAnnotations": {"type": "object", "additionalProperties": STR}, **SCHEDULING}
POD_SECURITY = {
    "type": "object",
    "properties": {
        "runAsNonRoot": {"const": True, "description": "pods never run as root"},
        "runAsUser": {"type": "integer", "minimum": 1},
        "runAsGroup": {"type": "integer", "minimum": 1},
        "fsGroup": {"type": "integer", "minimum": 1},
        "seccompProfile": obj({"type": {"enum": ["RuntimeDefault", "Localhost"]}, "localhostProfile": STR}, ["type"]),
    },
    "required": ["runAsNonRoot", "runAsUser", "seccompProfile"],
}
METRIC = {
    "type": "object",
    "required": ["unit", "range", "profiles"],
    "properties": {
        "unit": STR,
        "description": STR,
        "range": obj({"min": {"type": "number"}, "max": {"type": "number"}}, ["min", "max"]),
        "aliases": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z][a-z0-9_]*$"}},
        "varies": BOOL,
        "profiles": {
            "type": "object",
            "additionalProperties": obj({"mean": {"type": "number"}, "std": {"type": "number", "minimum": 0}},
                                        ["mean", "std"]),
        },
    },
}

SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "citysense chart values",
    **obj({
        "global": obj({"imageRegistry": STR, "imagePullSecrets": {"type": "array", "items": DNS1123}}),
        "nameOverride": {"type": "string", "maxLength": 40},
        "fullnameOverride": {"type": "string", "maxLength": 45},
        "commonLabels": {"type": "object", "additionalProperties": STR},
        "image": obj({"tag": STR, "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["pullPolicy"]),
        "kafka": obj({
            "bootstrapServers": {"type": "string", "pattern": r"^[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*$"},
            "options": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
                        "description": "librdkafka properties"},
            "topics": obj({
                "readings": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 6}},
                                ["name", "partitions"]),
                "alerts": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 1}}, ["name", "partitions"]),
                "dlq": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 1}}, ["name", "partitions"]),
                "webhookTests": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 1}},
                                    ["name", "partitions"]),
                "webhookRetries": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 1}},
                                      ["name", "partitions"]),
                "citizenMail": obj({"name": TOPIC, "partitions": {"type": "integer", "minimum": 1}},
                                   ["name", "partitions"]),
            }, ["readings", "alerts", "dlq", "webhookTests", "webhookRetries", "citizenMail"]),
        }, ["bootstrapServers", "topics"]),
        "cassandra": obj({
            "hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
            "port": PORT,
            "keyspace": {"type": "string", "pattern": r"^[a-z][a-z0-9_]{0,47}$"},
            "localDC": {"type": "string", "minLength": 1},
            "consistency": {"enum": ["ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
                                     "LOCAL_ONE", "ANY"]},
            "replication": obj({
                "strategy": {"enum": ["SimpleStrategy", "NetworkTopologyStrategy"]},
                "datacenters": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}},
                "factor": {"type": "integer", "minimum": 1},
            }, ["strategy"]),
            "readingsTtlDays": {"type": "integer", "minimum": 0},
            "auth": obj({"existingSecret": {**DNS1123, "minLength": 1}, "usernameKey": STR, "passwordKey": STR},
                        ["existingSecret", "usernameKey", "passwordKey"]),
        }, ["hosts", "keyspace", "consistency", "auth"]),
        "config": obj({
            "environment": {"enum": ["production", "development"]},
            "profile": {"type": "string", "pattern": r"^[a-z][a-z0-9_-]*$"},
            "logLevel": {"enum": ["DEBUG", "INFO", "WARNING", "ERROR"]},
            "logFormat": {"enum": ["text", "json"]},
            "metrics": {
                "type": "object",
                "description": "metric registry (config/metrics.yaml format)",
                "properties": {
                    "version": {"type": "integer"},
                    "default_profile": STR,
                    "profiles": {"type": "object"},
                    "metrics": {"type": "object", "minProperties": 1, "additionalProperties": METRIC,
                                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"}},
                },
                "required": ["metrics"],
            },
            "rules": {"type": "object", "description": "threshold rules (config/rules.yaml format)"},
            "cap": {"type": "object", "description": "the alert API's CAP feed (config/cap.yaml format); "
                                                     "empty = no feed"},
        }, ["profile", "metrics", "rules"]),
        "podSecurityContext": POD_SECURITY,
        "containerSecurityContext": {
            "type": "object",
            "properties": {
                "allowPrivilegeEscalation": {"const": False},
                "readOnlyRootFilesystem": {"const": True},
                "runAsNonRoot": {"const": True},
                "privileged": {"const": False},
                "capabilities": obj({"drop": {"type": "array", "contains": {"const": "ALL"}},
                                     "add": {"type": "array", "maxItems": 0}}, ["drop"]),
                "seccompProfile": obj({"type": {"enum": ["RuntimeDefault", "Localhost"]}, "localhostProfile": STR},
                                      ["type"]),
            },
            "required": ["allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities"],
        },
        "serviceAccount": obj({"create": BOOL, "name": STR, "annotations": free()}, ["create"]),
        "simulator": obj({
            "enabled": BOOL, "image": IMAGE,
            "replicas": {"type": "integer", "minimum": 0},
            "stationsPerReplica": {"type": "integer", "minimum": 1, "maximum": 1000000},
            "rateHz": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            "stationPrefix": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,16}$"},
            "bbox": {"type": "string",
                     "pattern": r"^$|^-?[0-9.]+,-?[0-9.]+,-?[0-9.]+,-?[0-9.]+$"},
            "scenarios": {"type": "array", "items": STR},
            "metricsPort": PORT,
            "autoscaling": HPA,
            "resources": RESOURCES,
            **POD_EXTRAS,
        }, ["enabled", "image", "replicas", "stationsPerReplica", "rateHz", "metricsPort", "resources"]),
        "alertApi": obj({
            "enabled": BOOL, "image": IMAGE,
            "replicas": {"type": "integer", "minimum": 1},
            "port": PORT,
            "service": obj({
                "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "port": PORT,
                "nodePort": {"oneOf": [{"type": "null"}, {"type": "integer", "minimum": 30000, "maximum": 32767}]},
                "annotations": free(),
            }, ["type", "port"]),
            "ingress": obj({
                "enabled": BOOL, "className": STR, "annotations": free(),
                "hosts": {"type": "array", "items": obj({
                    "host": STR,
                    "paths": {"type": "array", "minItems": 1, "items": obj({
                        "path": {"type": "string", "pattern": "^/"},
                        "pathType": {"enum": ["Prefix", "Exact", "ImplementationSpecific"]},
                    }, ["path", "pathType"])},
                }, ["host", "paths"])},
                "tls": {"type": "array", "items": obj({"hosts": {"type": "array", "items": STR},
                                                       "secretName": DNS1123}, ["hosts", "secretName"])},
            }, ["enabled"]),
            "autoscaling": HPA,
            "podDisruptionBudget": obj({"enabled": BOOL, "maxUnavailable": {"type": "integer", "minimum": 1}},
                                       ["enabled", "maxUnavailable"]),
            "auth": obj({
                "existingSecret": {"oneOf": [{"const": ""}, DNS1123]},
                "tokenKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                "token": {"type": "string", "anyOf": [{"const": ""}, {"minLength": 32}],
                          "not": {"enum": ["changeme", "change-me", "secret", "token"]},
                          "description": "at least 32 characters; empty = generated"},
            }, ["tokenKey"]),
            "webhookAllowedNetworks": {"type": "array", "items": CIDR},
            "resources": RESOURCES,
            **POD_EXTRAS,
        }, ["enabled", "image", "replicas", "port", "service", "resources"]),
        "notifier": obj({
            "enabled": BOOL, "image": IMAGE,
            "replicas": {"type": "integer", "minimum": 1},
            "metricsPort": PORT,
            "alertmanagerUrl": {"type": "string", "pattern": r"^$|^https?://"},
            "mqtt": obj({
                "host": {"type": "string", "pattern": r"^[^\s/]*$", "description": "host name or address, no scheme"},
                "port": PORT,
                "tls": BOOL,
                "caSecret": {"oneOf": [{"const": ""}, DNS1123]},
                "caKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                "existingSecret": {"oneOf": [{"const": ""}, DNS1123]},
                "usernameKey": {"type": "string", "minLength": 1},
                "passwordKey": {"type": "string", "minLength": 1},
                "topicPrefix": {"type": "string", "pattern": r"^[^/+#\s]+(/[^/+#\s]+)*$",
                                "description": "topic levels without wildcards, e.g. city/citysense"},
                "public": {"type": "object", "propertyNames": {"enum": ALERT_KINDS},
                           "additionalProperties": {"type": "array", "uniqueItems": True,
                                                    "items": {"enum": SEVERITIES}},
                           "description": "alert kind -> severities published; empty = the CAP feed's"},
            }, ["host", "port", "tls", "topicPrefix"]),
            "smtp": obj({
                "host": {"type": "string", "pattern": r"^[^\s/]*$", "description": "host name or address, no scheme"},
                "port": PORT,
                "security": {"enum": ["starttls", "tls", "none"]},
                "caSecret": {"oneOf": [{"const": ""}, DNS1123]},
                "caKey": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                "fromAddress": {"type": "string", "pattern": r"^[^\r\n]*@[^\r\n]*$",
                                "description": "alerts@example.org or Name <alerts@example.org>"},
                "username": STR,
                "existingSecret": {"oneOf": [{"const": ""}, DNS1123]},
                "passwordKey": {"type": "string", "minLength": 1},
            }, ["host", "port", "security", "fromAddress"]),
            "resources": RESOURCES,
            **POD_EXTRAS,
        }, ["enabled", "image", "replicas", "metricsPort", "resources"]),
        "scorer": obj({
            "enabled": BOOL, "image": IMAGE,
            "sparkVersion": {"type": "string", "pattern": r"^[34]\.[0-9]+\.[0-9]+$"},
            "serviceAccountName": DNS1123,
            "mainApplicationFile": {"type": "string", "pattern": r"^(local|file|s3a|gs|hdfs|https?)://"},
            "arguments": {"type": "array", "minItems": 1, "items": STR},
            "podSecurityContext": POD_SECURITY,
            "restartPolicy": obj({"onFailureRetryInterval": {"type": "integer", "minimum": 1},
                                  "onSubmissionFailureRetryInterval": {"type": "integer", "minimum": 1}}),
            "driver": obj({"cores": {"type": "integer", "minimum": 1}, "coreLimit": QUANTITY,
                           "memory": SPARK_MEMORY, "memoryOverhead": SPARK_MEMORY,
                           "livenessProbe": free("Probe of the driver container")},
                          ["cores", "coreLimit", "memory"]),
            "executor": obj({"instances": {"type": "integer", "minimum": 1}, "cores": {"type": "integer", "minimum": 1},
                             "coreLimit": QUANTITY, "memory": SPARK_MEMORY, "memoryOverhead": SPARK_MEMORY},
                            ["instances", "cores", "coreLimit", "memory"]),
            "checkpoint": obj({
                "persistentVolumeClaim": obj({
                    "existingClaim": STR,
                    "accessModes": {"type": "array", "minItems": 1, "uniqueItems": True,
                                    "items": {"enum": ["ReadWriteOnce", "ReadWriteMany", "ReadWriteOncePod"]}},
                    "storageClassName": STR,
                    "size": QUANTITY,
                }, ["accessModes", "size"]),
            }, ["persistentVolumeClaim"]),
            "sparkConf": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "hadoopConf": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
            "extraEnv": POD_EXTRAS["extraEnv"],
            "realtime": obj({
                "enabled": {"type": "boolean", "description": "run the short-window rules in a Real-Time Mode query"},
                "maxWindow": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d)$",
                              "description": "longest rule window on the real-time path, e.g. 10m"},
                "checkpointInterval": {"type": "string",
                                       "pattern": "^[0-9]+ (second|seconds|minute|minutes|hour|hours)$",
                                       "description": "Real-Time Mode checkpoint interval, e.g. '1 minute' "
                                                      "(at least 5 seconds)"},
            }, ["enabled", "maxWindow", "checkpointInterval"]),
            "stream": obj({
                "triggerMs": {"type": ["integer", "null"], "minimum": 0,
                              "description": "micro-batch trigger interval (ms); 0 = back to back; null = 5000 "
                                             "with the real-time path, 500 without"},
            }, []),
            "health": obj({
                "enabled": BOOL,
                "offlineAfterSeconds": {"type": "number", "exclusiveMinimum": 0},
                "buckets": {"type": "integer", "minimum": 1, "maximum": 4096,
                            "description": "state-store keys the stations are hashed into"},
                "offlineGroups": {"type": "object", "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
                                  "description": "offline_after per station-id glob"},
            }, ["enabled"]),
            "batch": obj({
                "enabled": BOOL,
                "schedule": {"type": "string",
                             "pattern": r"^(@(hourly|daily|weekly|monthly|yearly|every \S+)|(\S+\s+){4}\S+)$"},
                "arguments": {"type": "array", "minItems": 1, "items": STR},
                "concurrencyPolicy": {"enum": ["Allow", "Forbid", "Replace"]},
                "successfulRunHistoryLimit": {"type": "integer", "minimum": 0},
                "failedRunHistoryLimit": {"type": "integer", "minimum": 0},
                "executor": obj({"instances": {"type": "integer", "minimum": 1},
                                 "cores": {"type": "integer", "minimum": 1}, "memory": SPARK_MEMORY},
                                ["instances", "cores", "memory"]),
            }, ["enabled", "schedule"]),
        }, ["enabled", "image", "sparkVersion", "serviceAccountName", "driver", "executor", "checkpoint"]),
        "monitoring": obj({
            "serviceMonitor": obj({"enabled": BOOL, "interval": {"type": "string", "pattern": r"^[0-9]+(s|m)$"},
                                   "labels": {"type": "object", "additionalProperties": STR}}, ["enabled"]),
            "prometheusRule": obj({
                "enabled": BOOL, "labels": {"type": "object", "additionalProperties": STR},
                "consumerLagMessages": {"type": "integer", "minimum": 1},
                "deadLetterPerSecond": {"type": "number", "exclusiveMinimum": 0},
                "deliveryFailuresPerSecond": {"type": "number", "exclusiveMinimum": 0},
                "scorerBatchSeconds": {"type": "number", "exclusiveMinimum": 0},
                "notifierConsumerGroup": {"type": "string", "minLength": 1},
                "storeFreeRatio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "storeFreeBytes": {"type": "integer", "minimum": 1},
                "cassandraDataClaimPattern": {"type": "string", "minLength": 1},
            }, ["enabled"]),
            "grafanaDashboard": obj({"enabled": BOOL, "label": {"type": "string", "minLength": 1},
                                     "labelValue": STR, "annotations": free()}, ["enabled"]),
        }),
        "networkPolicy": obj({
            "enabled": BOOL,
            "metricsFrom": LIST_OBJ,
            "apiFrom": LIST_OBJ,
            "kafkaPorts": {"type": "array", "minItems": 1, "items": PORT},
            "cassandraPorts": {"type": "array", "minItems": 1, "items": PORT},
            "webhookEgressCIDRs": {"type": "array", "items": CIDR},
            "webhookEgressExcept": {"type": "array", "items": CIDR},
            "webhookPorts": {"type": "array", "minItems": 1, "uniqueItems": True, "items": PORT},
            "mqttEgressTo": LIST_OBJ,
            "smtpEgressTo": LIST_OBJ,
        }, ["enabled"]),
        "citizen": obj({
            "publicUrl": {"type": "string", "pattern": r"^https?://[^\s?#]+$",
                          "description": "absolute base URL of the citizen page, no query"},
            "existingSecret": {"oneOf": [{"const": ""}, DNS1123]},
            "secretKey": {"type": "string", "minLength": 1},
            "secret": {"oneOf": [{"const": ""}, {"type": "string", "minLength": 32}],
                       "description": "at least 32 characters; empty = generated"},
        }, ["publicUrl", "secretKey"]),
        "tests": obj({"enabled": BOOL}),
    }, ["kafka", "cassandra", "config", "simulator", "alertApi", "notifier", "scorer"]),
}


def main() -> int:
    text = json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
    if "--check" in sys.argv[1:]:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print("charts/citysense/values.schema.json is stale: run charts/citysense/scripts/gen-schema.py",
                  file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
