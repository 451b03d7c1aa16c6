"""Static checks of k8s/, spark-operator/, skaffold.yaml, mk/cluster.mk and the runbook against the chart."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from chart_helpers import CHART, KUBERNETES_VERSION, REPO, find, render

K8S = REPO / "k8s"


def docs_of(path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def all_k8s() -> list[dict]:
    return [d for f in sorted(K8S.glob("*.yaml")) if f.name != "kind-cluster.yaml" for d in docs_of(f)]


def chart_values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))


def test_builtin_kinds_validate_strict() -> None:
    docs = all_k8s() + docs_of(REPO / "spark-operator" / "driver-rbac.yaml")
    builtin = [d for d in docs if "." not in d["apiVersion"].split("/")[0] or d["apiVersion"].startswith("rbac.")]
    assert {d["kind"] for d in builtin} >= {"Namespace", "ServiceAccount", "Role", "RoleBinding"}
    for doc in builtin:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_resource_lives_in_the_citysense_namespace() -> None:
    for doc in all_k8s() + docs_of(REPO / "spark-operator" / "driver-rbac.yaml"):
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "citysense", doc["metadata"]["name"]


def test_kafka_is_kraft_with_node_pools_on_the_strimzi_v1_api() -> None:
    docs = docs_of(K8S / "kafka.yaml")
    kafka = find(docs, "Kafka", "citysense")
    pool = find(docs, "KafkaNodePool")
    assert kafka["apiVersion"] == pool["apiVersion"] == "kafka.strimzi.io/v1"
    assert "zookeeper" not in kafka["spec"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == "citysense"
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    listeners = {listener["name"]: listener["port"] for listener in kafka["spec"]["kafka"]["listeners"]}
    bootstrap = chart_values()["kafka"]["bootstrapServers"]
    assert bootstrap == f"citysense-kafka-bootstrap:{listeners['plain']}"
    assert "kafkaExporter" in kafka["spec"], "the PrometheusRule's lag/offset metrics come from the Kafka Exporter"


def test_topics_match_the_chart() -> None:
    topics = {d["metadata"]["name"]: d["spec"] for d in docs_of(K8S / "kafka-topics.yaml")}
    for key, topic in chart_values()["kafka"]["topics"].items():
        assert topic["name"] in topics, f"no KafkaTopic for chart topic {key}"
        spec = topics[topic["name"]]
        assert spec["partitions"] == topic["partitions"], f"{topic['name']}: partitions differ from the chart"
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"]
        assert int(spec["config"]["retention.ms"]) > 0
    assert topics["citysense.readings"]["partitions"] >= 6
    for doc in docs_of(K8S / "kafka-topics.yaml"):
        assert doc["apiVersion"] == "kafka.strimzi.io/v1"
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "citysense"


def test_k8ssandra_cluster_matches_the_chart() -> None:
    cluster = find(docs_of(K8S / "k8ssandra-cluster.yaml"), "K8ssandraCluster", "citysense")
    assert cluster["apiVersion"] == "k8ssandra.io/v1alpha1"
    dcs = cluster["spec"]["cassandra"]["datacenters"]
    assert len(dcs) == 1
    dc = dcs[0]
    values = chart_values()["cassandra"]
    assert dc["metadata"]["name"] == values["localDC"]
    assert values["hosts"] == [f"citysense-{dc['metadata']['name']}-service"]
    assert values["auth"]["existingSecret"] == "citysense-superuser"  # K8ssandra: <cluster>-superuser
    assert dc["size"] >= 1
    assert dc["storageConfig"]["cassandraDataVolumeClaimSpec"]["resources"]["requests"]["storage"]
    assert set(values["replication"]["datacenters"]) == {dc["metadata"]["name"]}
    assert values["replication"]["datacenters"][dc["metadata"]["name"]] <= dc["size"]


def test_kind_config_maps_the_api_node_port() -> None:
    kind = docs_of(K8S / "kind-cluster.yaml")[0]
    assert kind["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    mappings = {m["containerPort"]: m["hostPort"] for n in kind["nodes"] for m in n.get("extraPortMappings", [])}
    kind_values = yaml.safe_load((CHART / "ci" / "kind-values.yaml").read_text(encoding="utf-8"))
    assert mappings[kind_values["alertApi"]["service"]["nodePort"]] == 8080
    image = kind["nodes"][0]["image"]
    assert image.startswith("kindest/node:v" + KUBERNETES_VERSION.rsplit(".", 1)[0])


def test_spark_operator_watches_citysense_and_driver_rbac_fits_the_chart() -> None:
    values = yaml.safe_load((REPO / "spark-operator" / "values.yaml").read_text(encoding="utf-8"))
    assert values["spark"]["jobNamespaces"] == ["citysense"]
    assert values["webhook"]["enable"] is True, "volumes and securityContext need the mutating webhook"
    rbac = docs_of(REPO / "spark-operator" / "driver-rbac.yaml")
    account = find(rbac, "ServiceAccount")
    assert account["metadata"]["name"] == chart_values()["scorer"]["serviceAccountName"]
    rules = find(rbac, "Role")["rules"]
    pod_verbs = {v for r in rules if "pods" in r["resources"] for v in r["verbs"]}
    assert {"create", "get", "list", "watch", "delete"} <= pod_verbs
    binding = find(rbac, "RoleBinding")
    assert binding["subjects"][0]["name"] == account["metadata"]["name"]
    assert binding["roleRef"]["name"] == find(rbac, "Role")["metadata"]["name"]


def test_skaffold_builds_four_images_from_the_root_and_deploys_the_chart() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text(encoding="utf-8"))
    assert re.fullmatch(r"skaffold/v4beta\d+", config["apiVersion"])
    artifacts = config["build"]["artifacts"]
    assert {a["image"] for a in artifacts} == {f"citysense/{s}" for s in ("simulator", "scorer", "alert-api",
                                                                           "notifier")}
    for artifact in artifacts:
        assert artifact["context"] == "."
        # One Dockerfile for the four services: SERVICE and the target stage both name the artifact's service.
        service = artifact["image"].split("/")[1]
        assert artifact["docker"]["dockerfile"] == "docker/python-service.Dockerfile"
        assert artifact["docker"]["buildArgs"] == {"SERVICE": service}
        assert artifact["docker"]["target"] == service
        dockerfile = (REPO / artifact["docker"]["dockerfile"]).read_text(encoding="utf-8")
        assert re.search(rf"^FROM \S+ AS {re.escape(service)}$", dockerfile, re.M), f"no stage {service}"
    release = config["manifests"]["helm"]["releases"][0]
    assert (REPO / release["chartPath"] / "Chart.yaml").is_file()
    assert config["deploy"]["helm"] == {}
    templates = release["setValueTemplates"]
    values = chart_values()
    for artifact in artifacts:
        key = re.sub(r"[/-]", "_", artifact["image"])
        component = {"alert-api": "alertApi"}.get(artifact["image"].split("/")[1], artifact["image"].split("/")[1])
        assert templates[f"{component}.image.repository"] == "{{.IMAGE_REPO_" + key + "}}"
        assert templates[f"{component}.image.tag"] == "{{.IMAGE_TAG_" + key + "}}"
        assert values[component]["image"]["repository"] == artifact["image"]
    assert {p["name"] for p in config["profiles"]} == {"kind", "minikube", "dev"}
    for profile in config["profiles"]:
        for patch in profile.get("patches", []):
            if patch["path"].endswith("/valuesFiles"):
                assert all((REPO / f).is_file() for f in patch["value"])
            if patch["path"].endswith("/setValues"):
                rendered = render(values={k: v for k, v in patch["value"].items()})
                assert rendered


def test_cluster_makefile_pins_operator_versions() -> None:
    mk = (REPO / "mk" / "cluster.mk").read_text(encoding="utf-8")
    for var in ("CERT_MANAGER_VERSION", "STRIMZI_VERSION", "K8SSANDRA_VERSION", "SPARK_OPERATOR_VERSION"):
        assert re.search(rf"^{var}\s*\?=\s*v?\d+\.\d+\.\d+$", mk, re.M), f"{var} is not pinned"
    for target in ("kind-up:", "kind-down:", "e2e-containers:", "chart-lint:"):
        assert re.search(rf"^{target}", mk, re.M)
    assert "--version $(STRIMZI_VERSION)" in mk and "--version $(SPARK_OPERATOR_VERSION)" in mk
    assert "-f spark-operator/values.yaml" in mk and "k8s/kind-cluster.yaml" in mk


@pytest.mark.parametrize("name", ["citysense-simulator", "citysense-alert-api", "citysense-notifier",
                                  "citysense-scorer", "citysense-scorer-batch", "citysense-config",
                                  "citysense-api-token", "citysense-scorer-checkpoint"])
def test_runbook_names_exist_in_the_rendered_chart(name) -> None:
    runbook = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    assert name in runbook
    assert name in {d["metadata"]["name"] for d in render()}


def test_runbook_commands_use_real_names() -> None:
    runbook = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    names = {d["metadata"]["name"] for d in render()}
    for kind, name in re.findall(r"\b(deployment|statefulset|sparkapplication|scheduledsparkapplication|svc)/"
                                 r"(citysense-[a-z0-9-]+)", runbook):
        assert name in names, f"runbook refers to {kind}/{name}, which the chart does not create"
    for flag in re.findall(r"--set ([a-zA-Z.]+)=", runbook):
        node = chart_values()
        for part in flag.split("."):
            assert part in node, f"runbook sets {flag}, not a chart value"
            node = node[part]
    group = chart_values()["monitoring"]["prometheusRule"]["notifierConsumerGroup"]
    assert f"--group {group}" in runbook
    for topic in chart_values()["kafka"]["topics"].values():
        if topic["name"] in ("citysense.alerts", "citysense.readings.dlq"):
            assert f"--topic {topic['name']}" in runbook


def test_local_topics_match_the_cluster_topics() -> None:
    """`make up` and the tests create the contract's topics with the cluster's partitions and retention times; the
    readings topic has fewer partitions locally (each is a task slot of the real-time query on a laptop's cores)."""
    from citysense_common.kafka import citizen_mail_topic, default_topics, webhook_retries_topic, webhook_tests_topic
    from citysense_common.settings import CommonSettings

    cluster = {d["metadata"]["name"]: d["spec"] for d in docs_of(K8S / "kafka-topics.yaml")}
    local = [*default_topics(CommonSettings()), webhook_tests_topic("citysense.webhook-tests"),
             webhook_retries_topic("citysense.webhook-retries"), citizen_mail_topic("citysense.citizen-mail")]
    assert {t.name for t in local} == set(cluster)
    for topic in local:
        spec = cluster[topic.name]
        if topic.name == "citysense.readings":
            assert topic.partitions == CommonSettings().readings_partitions < spec["partitions"]
        else:
            assert topic.partitions == spec["partitions"], topic.name
        assert topic.config["retention.ms"] == str(spec["config"]["retention.ms"]), topic.name
        assert int(topic.config["retention.bytes"]) > 0, f"{topic.name}: no size bound locally"
        assert topic.config.get("message.timestamp.type") == spec["config"].get("message.timestamp.type"), topic.name
