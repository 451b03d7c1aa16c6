"""helm lint/template over every ci/*-values.yaml, Kubernetes schema validation, and properties of rendered YAML."""

from __future__ import annotations

import json
import shutil

import kubernetes_validate
import pytest
import yaml
from chart_helpers import (
    CHART,
    CI_VALUES,
    KUBERNETES_VERSION,
    REPO,
    env_of,
    find,
    helm,
    pod_specs,
    render,
    template_raw,
)

CRD_KINDS = {"SparkApplication", "ScheduledSparkApplication", "ServiceMonitor", "PodMonitor", "PrometheusRule"}
COMPONENTS = {"simulator", "alert-api", "notifier"}


def test_ci_values_exist() -> None:
    assert {p.name for p in CI_VALUES} >= {"default-values.yaml", "kind-values.yaml", "production-values.yaml"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_helm_lint_strict(values_file) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values_file), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_rendered_manifests_pass_kubernetes_validate_strict(values_file) -> None:
    docs = render(values_file)
    assert docs, "nothing rendered"
    validated = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        validated += 1
    assert validated >= 5


def test_kubernetes_validate_catches_a_bad_field() -> None:
    """Guards the guard: strict validation really rejects unknown fields in what we render."""
    deployment = json.loads(json.dumps(find(render(), "Deployment", "citysense-alert-api")))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_container_has_probes_resources_and_strict_security(values_file) -> None:
    specs = pod_specs(render(values_file))
    assert specs
    for name, spec in specs.items():
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, f"{name} mounts an API token it does not need"
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), name
            assert "memory" in container["resources"]["limits"], name
            if not name.startswith("Pod/"):  # the helm test pod runs once
                for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                    assert probe in container, f"{name}: no {probe}"
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if not name.startswith("Pod/"):
                assert {"/tmp", "/var/lib/citysense", "/etc/citysense"} <= mounts  # noqa: S108, f"{name}: writable paths missing"


def test_api_probes_hit_health_endpoints(default_docs) -> None:
    container = find(default_docs, "Deployment", "citysense-alert-api")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == 8000


def test_standard_labels_everywhere(default_docs) -> None:
    for doc in default_docs:
        labels = doc["metadata"]["labels"]
        ref = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == "citysense", ref
        assert labels["app.kubernetes.io/instance"] == "citysense", ref
        assert labels["app.kubernetes.io/managed-by"] == "Helm", ref
        assert labels["app.kubernetes.io/part-of"] == "citysense", ref
        assert labels["app.kubernetes.io/version"] == "0.1.0", ref
        assert labels["helm.sh/chart"] == "citysense-0.1.0", ref
    for kind, name, component in [("Deployment", "citysense-alert-api", "alert-api"),
                                  ("Deployment", "citysense-notifier", "notifier"),
                                  ("StatefulSet", "citysense-simulator", "simulator")]:
        workload = find(default_docs, kind, name)
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == component
        assert "app.kubernetes.io/version" not in selector, "selectors must not contain mutable labels"
        assert selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()


def test_release_name_drives_resource_names() -> None:
    docs = render(release="pilot")
    names = {d["metadata"]["name"] for d in docs}
    assert {"pilot-citysense-alert-api", "pilot-citysense-simulator", "pilot-citysense-scorer"} <= names
    assert all(d["metadata"]["labels"]["app.kubernetes.io/instance"] == "pilot" for d in docs)


def test_values_flow_into_environment() -> None:
    docs = render(values={
        "kafka.bootstrapServers": "kafka-0.example:9093",
        "kafka.options": {"security.protocol": "SSL"},
        "kafka.topics.alerts.name": "city.alerts",
        "cassandra.hosts": ["c1", "c2"],
        "cassandra.consistency": "LOCAL_ONE",
        "config.logLevel": "DEBUG",
        "simulator.stationsPerReplica": 777,
        "simulator.rateHz": 2,
        "alertApi.webhookAllowedNetworks": ["10.1.0.0/16"],
    })
    api = env_of(find(docs, "Deployment", "citysense-alert-api")["spec"]["template"]["spec"]["containers"][0])
    assert api["CITYSENSE_KAFKA_BOOTSTRAP"] == "kafka-0.example:9093"
    assert json.loads(api["CITYSENSE_KAFKA_OPTIONS"]) == {"security.protocol": "SSL"}
    assert api["CITYSENSE_ALERTS_TOPIC"] == "city.alerts"
    assert api["CITYSENSE_STORE"] == "cassandra"
    assert api["CITYSENSE_CASSANDRA_HOSTS"] == "c1,c2"
    assert api["CITYSENSE_CASSANDRA_CONSISTENCY"] == "LOCAL_ONE"
    assert api["CITYSENSE_LOG_LEVEL"] == "DEBUG"
    assert api["CITYSENSE_API_HOST"] == "0.0.0.0"
    assert api["CITYSENSE_ENV"] == "production"
    assert api["CITYSENSE_WEBHOOK_ALLOWED_NETWORKS"] == "10.1.0.0/16"
    assert api["CITYSENSE_API_TOKEN"] == {"secretKeyRef": {"name": "citysense-api-token", "key": "token"}}
    assert api["CITYSENSE_CASSANDRA_PASSWORD"] == {"secretKeyRef": {"name": "citysense-superuser", "key": "password"}}
    sim = env_of(find(docs, "StatefulSet", "citysense-simulator")["spec"]["template"]["spec"]["containers"][0])
    assert sim["CITYSENSE_STATIONS"] == "777"
    assert sim["CITYSENSE_RATE_HZ"] == "2"
    assert sim["CITYSENSE_INSTANCE_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    notifier = env_of(find(docs, "Deployment", "citysense-notifier")["spec"]["template"]["spec"]["containers"][0])
    assert notifier["CITYSENSE_NOTIFIER_METRICS_HOST"] == "0.0.0.0"
    assert notifier["CITYSENSE_WEBHOOK_ALLOWED_NETWORKS"] == "10.1.0.0/16"
    scorer = find(docs, "SparkApplication", "citysense-scorer")["spec"]
    for role in ("driver", "executor"):
        spark_env = env_of(scorer[role])
        assert spark_env["CITYSENSE_KAFKA_BOOTSTRAP"] == "kafka-0.example:9093"
        assert spark_env["CITYSENSE_CASSANDRA_HOSTS"] == "c1,c2"


def test_env_names_exist_in_the_services_settings() -> None:
    """Every CITYSENSE_* variable the chart sets is a field of some service's settings (no dead configuration)."""
    from citysense_common.citizen.settings import CitizenSettings
    from citysense_common.store.settings import StoreSettings

    fields = set(StoreSettings.model_fields) | {f"citizen_{name}" for name in CitizenSettings.model_fields}
    for module, cls in [("citysense_simulator.settings", "SimulatorSettings"),
                        ("citysense_alert_api.settings", "ApiSettings"),
                        ("citysense_notifier.settings", "NotifierSettings"),
                        ("citysense_scorer.settings", "ScorerSettings"),
                        ("citysense_scorer.health.settings", "HealthSettings")]:
        try:
            settings_module = __import__(module, fromlist=[cls])
        except ModuleNotFoundError:
            continue  # a service still being written; the e2e/report lists it
        fields |= set(getattr(settings_module, cls).model_fields)
    # Read by code outside the settings classes.
    known_elsewhere = {"CITYSENSE_CONFIG_DIR", "CITYSENSE_RULES_FILE"}
    unknown = set()
    for spec in pod_specs(render(CHART / "ci" / "production-values.yaml")).values():
        for container in spec["containers"]:
            for name in env_of(container):
                if name.startswith("CITYSENSE_") and name not in known_elsewhere:
                    if name.removeprefix("CITYSENSE_").lower() not in fields:
                        unknown.add(name)
    assert not unknown, f"chart sets variables no settings class reads: {sorted(unknown)}"


def test_scaling_simulator_replicas_times_stations() -> None:
    docs = render(values={"simulator.replicas": 7, "simulator.stationsPerReplica": 1500})
    sts = find(docs, "StatefulSet", "citysense-simulator")
    assert sts["spec"]["replicas"] == 7
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert env_of(sts["spec"]["template"]["spec"]["containers"][0])["CITYSENSE_STATIONS"] == "1500"
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and "simulator" in d["metadata"]["name"]]
    hpa_docs = render(values={"simulator.autoscaling.enabled": True, "simulator.autoscaling.maxReplicas": 9})
    hpa = find(hpa_docs, "HorizontalPodAutoscaler", "citysense-simulator")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": "citysense-simulator"}
    assert hpa["spec"]["maxReplicas"] == 9
    assert "replicas" not in find(hpa_docs, "StatefulSet", "citysense-simulator")["spec"], "HPA owns replicas"


@pytest.mark.parametrize(("values", "message"), [
    ({"notifier.replicas": 7}, "notifier.replicas (7) must not exceed kafka.topics.alerts.partitions (6)"),
    ({"kafka.topics.alerts.partitions": 2, "notifier.replicas": 3},
     "must not exceed kafka.topics.alerts.partitions (2)"),
    ({"scorer.executor.instances": 13},
     "scorer.executor.instances (13) must not exceed kafka.topics.readings.partitions (12)"),
    ({"alertApi.autoscaling.minReplicas": 5, "alertApi.autoscaling.maxReplicas": 3},
     "minReplicas (5) must not exceed maxReplicas (3)"),
    ({"alertApi.autoscaling.enabled": False, "alertApi.replicas": 2, "alertApi.podDisruptionBudget.maxUnavailable": 2},
     "PDB protects nothing"),
])
def test_scaling_math_is_enforced(values, message) -> None:
    result = template_raw(values=values)
    assert result.returncode != 0
    assert message in result.stderr


def test_notifier_at_partition_limit_renders() -> None:
    docs = render(values={"notifier.replicas": 6})
    assert find(docs, "Deployment", "citysense-notifier")["spec"]["replicas"] == 6


def test_alert_api_hpa_pdb_and_optional_ingress(default_docs) -> None:
    hpa = find(default_docs, "HorizontalPodAutoscaler", "citysense-alert-api")
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    assert "replicas" not in find(default_docs, "Deployment", "citysense-alert-api")["spec"]
    pdb = find(default_docs, "PodDisruptionBudget", "citysense-alert-api")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert not [d for d in default_docs if d["kind"] == "Ingress"]
    ingress = find(render(CHART / "ci" / "production-values.yaml"), "Ingress", "citysense-alert-api")
    assert ingress["spec"]["rules"][0]["host"] == "alerts.city.example.org"
    assert ingress["spec"]["tls"][0]["secretName"] == "citysense-api-tls"


def test_config_configmap_renders_metrics_and_rules_from_values(default_docs) -> None:
    cm = find(default_docs, "ConfigMap", "citysense-config")
    metrics = yaml.safe_load(cm["data"]["metrics.yaml"])
    source = yaml.safe_load((REPO / "config" / "metrics.yaml").read_text(encoding="utf-8"))
    assert metrics == source
    assert isinstance(yaml.safe_load(cm["data"]["rules.yaml"]), dict)


def test_new_sensor_type_is_a_values_change_only() -> None:
    docs = render(CHART / "ci" / "production-values.yaml")
    metrics = yaml.safe_load(find(docs, "ConfigMap", "citysense-config")["data"]["metrics.yaml"])["metrics"]
    assert metrics["co2"]["unit"] == "ppm"
    assert "pm2_5" in metrics, "values merge with the default registry, they do not replace it"


def test_config_change_rolls_every_workload() -> None:
    before = render()
    after = render(values={"config.metrics.metrics.co2": {"unit": "ppm", "range": {"min": 0, "max": 5000},
                                                          "profiles": {"city": {"mean": 420, "std": 30}}}})
    def checksums(docs):
        sums = {}
        for d in docs:
            if d["kind"] in {"Deployment", "StatefulSet"}:
                sums[d["metadata"]["name"]] = d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            if d["kind"] == "SparkApplication":
                sums[d["metadata"]["name"]] = d["spec"]["driver"]["annotations"]["checksum/config"]
        return sums
    old, new = checksums(before), checksums(after)
    assert set(old) == {"citysense-alert-api", "citysense-notifier", "citysense-simulator", "citysense-scorer"}
    assert all(old[name] != new[name] for name in old)
    assert checksums(render()) == old, "checksums are deterministic"


def test_api_token_secret_generated_or_taken_from_existing() -> None:
    docs = render(values={"alertApi.auth.token": "t" * 40})
    secret = find(docs, "Secret", "citysense-api-token")
    import base64
    assert base64.b64decode(secret["data"]["token"]).decode() == "t" * 40
    generated = find(render(), "Secret", "citysense-api-token")
    assert len(base64.b64decode(generated["data"]["token"])) == 48
    existing = render(values={"alertApi.auth.existingSecret": "my-token"})
    assert not [d for d in existing if d["kind"] == "Secret" and "api-token" in d["metadata"]["name"]]
    api = env_of(find(existing, "Deployment", "citysense-alert-api")["spec"]["template"]["spec"]["containers"][0])
    assert api["CITYSENSE_API_TOKEN"]["secretKeyRef"]["name"] == "my-token"


def test_scorer_spark_application(default_docs) -> None:
    app = find(default_docs, "SparkApplication", "citysense-scorer")
    assert app["apiVersion"] == "sparkoperator.k8s.io/v1beta2"
    spec = app["spec"]
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    assert spec["restartPolicy"]["type"] == "Always"
    assert spec["arguments"] == ["stream"]
    assert spec["image"] == "citysense/scorer:0.1.0"
    assert spec["driver"]["serviceAccount"] == "citysense-spark"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "citysense-scorer-checkpoint"
    assert any(name.startswith("spark-local-dir-") for name in volumes), "Spark scratch space on a volume"
    for role in ("driver", "executor"):
        pod = spec[role]
        assert pod["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["podSecurityContext"]["runAsUser"] == 185
        mounts = {m["mountPath"]: m["name"] for m in pod["volumeMounts"]}
        assert mounts["/var/lib/citysense"] == "data", f"{role} must see the checkpoint (state store)"
        assert {"/tmp", "/opt/spark/work-dir"} <= set(mounts)  # noqa: S108
        assert pod["memory"] and pod["cores"] >= 1
    assert spec["driver"]["template"]["spec"]["containers"][0]["livenessProbe"]["tcpSocket"]["port"] == 4040
    pvc = find(default_docs, "PersistentVolumeClaim", "citysense-scorer-checkpoint")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_scorer_checkpoint_is_on_the_mounted_volume(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scorer's own setting (not a name no code reads) points into the volume the driver and executors mount."""
    from citysense_scorer.settings import scorer_settings

    docs = render(CHART / "ci" / "production-values.yaml")
    pvc = find(docs, "PersistentVolumeClaim", "citysense-scorer-checkpoint")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "cephfs"
    spec = find(docs, "SparkApplication", "citysense-scorer")["spec"]
    assert "spark.sql.streaming.checkpointLocation" not in spec["sparkConf"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "citysense-scorer-checkpoint"
    for role in ("driver", "executor"):
        env = env_of(spec[role])
        for name, value in env.items():
            if name.startswith("CITYSENSE_") and isinstance(value, str):
                monkeypatch.setenv(name, value)
        mounts = {m["mountPath"]: m["name"] for m in spec[role]["volumeMounts"]}
        checkpoint = scorer_settings().checkpoint_dir
        assert [path for path, name in mounts.items() if name == "data" and checkpoint.is_relative_to(path)], role
    assert spec["sparkConf"]["spark.sql.shuffle.partitions"] == "6"  # 6 executors x 1 core, as the env says
    assert env_of(spec["driver"])["CITYSENSE_SCORER_SHUFFLE_PARTITIONS"] == "6"
    assert spec["image"].startswith("registry.example.org/citysense/scorer:0.1.0@sha256:")


def test_scheduled_batch(default_docs) -> None:
    batch = find(default_docs, "ScheduledSparkApplication", "citysense-scorer-batch")["spec"]
    assert batch["schedule"] == "30 1 * * *"
    assert batch["concurrencyPolicy"] == "Forbid"
    assert batch["template"]["arguments"][0] == "batch"
    assert batch["template"]["restartPolicy"]["type"] == "OnFailure"
    assert batch["template"]["image"] == find(default_docs, "SparkApplication", "citysense-scorer")["spec"]["image"]


def test_monitoring_resources() -> None:
    docs = render(CHART / "ci" / "production-values.yaml")
    monitors = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceMonitor"}
    assert monitors == {"citysense-alert-api", "citysense-simulator", "citysense-notifier"}
    assert find(docs, "PodMonitor")["spec"]["selector"]["matchLabels"]["spark-role"] == "driver"
    rule = find(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "kafka_consumergroup_lag" in alerts["CitysenseNotifierConsumerLag"]
    assert 'topic="citysense.readings.dlq"' in alerts["CitysenseDeadLetterRate"]
    assert "citysense_notifier_webhook_attempts_total" in alerts["CitysenseWebhookDeliveryFailures"]
    assert "spark_streaming" in alerts["CitysenseScorerBatchDuration"]
    dashboard = find(docs, "ConfigMap", "citysense-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    panels = json.loads(dashboard["data"]["citysense.json"])["panels"]
    assert len(panels) >= 8 and all(p["targets"] for p in panels)


def test_monitoring_off_by_default(default_docs) -> None:
    assert not {d["kind"] for d in default_docs} & {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_network_policies(default_docs) -> None:
    policies = {d["metadata"]["name"]: d["spec"] for d in default_docs if d["kind"] == "NetworkPolicy"}
    deny = policies["citysense-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    notifier_egress = policies["citysense-notifier"]["egress"]
    webhook = [rule for rule in notifier_egress if any("ipBlock" in peer for peer in rule.get("to", []))][0]
    block = webhook["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in block["except"] and "10.0.0.0/8" in block["except"]
    api_ports = [p["port"] for rule in policies["citysense-alert-api"]["ingress"] for p in rule["ports"]]
    assert api_ports == [8000]
    assert not render(CHART / "ci" / "minimal-values.yaml") or not [
        d for d in render(CHART / "ci" / "minimal-values.yaml") if d["kind"] == "NetworkPolicy"]


def test_helm_test_hook(default_docs) -> None:
    pod = find(default_docs, "Pod", "citysense-test-api")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["args"][0]
    assert "http://citysense-alert-api:80" in script and "/readyz" in script


def test_notes_mention_reachability(tmp_path) -> None:
    """NOTES.txt rendered through a copy of the chart (helm template skips NOTES; install needs a cluster)."""
    chart = tmp_path / "citysense"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart / "templates" / "_notes_under_test.tpl").write_text(
        '{{- define "notes.under.test" -}}' + notes + "{{- end -}}", encoding="utf-8")
    (chart / "templates" / "notes-under-test.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "notes.under.test" . | toJson }}\n', encoding="utf-8")
    result = helm("template", "citysense", str(chart), "--namespace", "citysense", "--show-only",
                  "templates/notes-under-test.yaml", "-f", str(CHART / "ci" / "kind-values.yaml"))
    text = yaml.safe_load(result.stdout)["data"]["notes"]
    assert "http://localhost:8080/" in text
    assert "2 pods x 200 stations = 400 stations" in text
    assert "helm test citysense -n citysense" in text
    assert "kubectl -n citysense get secret citysense-api-token" in text
