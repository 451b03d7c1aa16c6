"""Spark pods with a read-only root filesystem need a writable, exec-capable place for JNI native libraries.

The scorer's JVM loads native code shipped inside jars: RocksDB (the state store of the station-health operator),
zstd-jni, snappy-java and lz4-java. Each library is extracted to a file and dlopen()ed from there: RocksDB writes
into ``$ROCKSDB_SHAREDLIB_DIR`` when that is set and into ``java.io.tmpdir`` (default ``/tmp``) otherwise, the
others into ``java.io.tmpdir``. With the root filesystem read-only that directory must be a writable volume, and one
the kernel lets map executable pages from: Docker's ``--tmpfs`` is ``noexec`` unless told ``exec`` (the container
e2e run's scorer exited on ``UnsatisfiedLinkError ... failed to map segment from shared object``); a Kubernetes
``emptyDir`` (on disk or ``medium: Memory``) and a persistent volume are mounted without ``noexec``, while
configMap, secret, projected and downwardAPI volumes are read-only.

:func:`native_library_problems` reads the rendered pod specs the way the JVM would resolve those directories; the
tests run it over every CI values file and over mutated renders (each mutation must be caught).
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import PurePosixPath

import pytest
from chart_helpers import CI_VALUES, pod_specs, render

SPARK_APPS = {"SparkApplication", "ScheduledSparkApplication"}
# Volume types a container can write to and execute from. (configMap, secret, projected, downwardAPI: read-only.)
WRITABLE_EXEC_VOLUMES = {"emptyDir", "ephemeral", "persistentVolumeClaim", "hostPath"}
JAVA_OPTION_ENV = ("JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS")


def _java_tmpdir(java_options: list[str]) -> str:
    """java.io.tmpdir as the JVM resolves it: the last -Djava.io.tmpdir= wins, /tmp without one."""
    tmpdir = "/tmp"  # noqa: S108 - the JVM's default on Linux
    for options in java_options:
        for word in shlex.split(options or ""):
            if word.startswith("-Djava.io.tmpdir="):
                tmpdir = word.split("=", 1)[1]
    return tmpdir


def _spark_pods(docs: list[dict]) -> list[tuple[str, dict, list[dict], dict, str]]:
    """(name, container-ish spec, pod volumes, pod security context, java options of that role) of every pod that
    runs Spark: SparkApplication drivers/executors, and any workload container with PYSPARK_PYTHON or SPARK_HOME."""
    found = []
    for doc in docs:
        if doc["kind"] in SPARK_APPS:
            spec = doc["spec"]["template"] if doc["kind"] == "ScheduledSparkApplication" else doc["spec"]
            conf = spec.get("sparkConf", {})
            for role in ("driver", "executor"):
                found.append((f"{doc['kind']}/{doc['metadata']['name']}/{role}", spec[role], spec.get("volumes", []),
                              spec[role].get("podSecurityContext", {}), conf.get(f"spark.{role}.extraJavaOptions")))
    for name, pod in pod_specs(docs).items():
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            if {e["name"] for e in container.get("env", [])} & {"PYSPARK_PYTHON", "SPARK_HOME"}:
                found.append((f"{name}/{container['name']}", container, pod.get("volumes", []),
                              pod.get("securityContext", {}), None))
    return found


def native_library_problems(docs: list[dict]) -> list[str]:
    """What stops a Spark pod with a read-only root filesystem from loading its JNI libraries (empty: nothing)."""
    problems = []
    for name, container, volumes, pod_security, java_options in _spark_pods(docs):
        security = container.get("securityContext", {})
        if not security.get("readOnlyRootFilesystem"):
            continue
        if (security.get("runAsUser", pod_security.get("runAsUser")) or 0) == 0:
            problems.append(f"{name}: read-only root but runs as root (expected the image's non-root user)")
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        tmpdir = _java_tmpdir([java_options or "", *(env.get(k) or "" for k in JAVA_OPTION_ENV)])
        wanted = {"java.io.tmpdir": tmpdir}
        if env.get("ROCKSDB_SHAREDLIB_DIR"):
            wanted["ROCKSDB_SHAREDLIB_DIR"] = env["ROCKSDB_SHAREDLIB_DIR"]
        by_name = {v["name"]: v for v in volumes}
        mounts = container.get("volumeMounts", [])
        for what, directory in wanted.items():
            path = PurePosixPath(directory)
            # The deepest mount containing the directory decides (a mount inside a mount shadows it).
            covering = [m for m in mounts if path == PurePosixPath(m["mountPath"])
                        or PurePosixPath(m["mountPath"]) in path.parents]
            if not covering:
                problems.append(f"{name}: {what}={directory} is on the read-only root filesystem (no volume)")
                continue
            mount = max(covering, key=lambda m: len(PurePosixPath(m["mountPath"]).parts))
            volume = by_name.get(mount["name"])
            kinds = set(volume or {}) - {"name"}
            if volume is None:
                problems.append(f"{name}: {what}={directory}: mount {mount['name']} has no volume")
            elif mount.get("readOnly"):
                problems.append(f"{name}: {what}={directory} is mounted read-only ({mount['name']})")
            elif not kinds & WRITABLE_EXEC_VOLUMES:
                problems.append(f"{name}: {what}={directory} is on a {'/'.join(sorted(kinds))} volume "
                                f"({mount['name']}), which is read-only")
    return problems


@pytest.mark.parametrize("values_file", [None, *CI_VALUES], ids=lambda f: f.name if f else "defaults")
def test_spark_pods_have_a_writable_exec_capable_place_for_native_libraries(values_file) -> None:  # noqa: ANN001
    docs = render(*([values_file] if values_file else []))
    pods = _spark_pods(docs)
    if any(d["kind"] == "SparkApplication" for d in docs):  # minimal-values.yaml runs no scorer
        assert {p[0] for p in pods} >= {"SparkApplication/citysense-scorer/driver",
                                         "SparkApplication/citysense-scorer/executor"}
    assert all(p[1]["securityContext"]["readOnlyRootFilesystem"] for p in pods if p[0].startswith("Spark"))
    assert native_library_problems(docs) == []


def _mutated(mutate) -> list[dict]:  # noqa: ANN001
    docs = copy.deepcopy(render())
    for doc in docs:
        if doc["kind"] == "SparkApplication":
            mutate(doc["spec"])
    return docs


def _drop_tmp_mount(spec: dict) -> None:
    for role in ("driver", "executor"):
        spec[role]["volumeMounts"] = [m for m in spec[role]["volumeMounts"] if m["mountPath"] != "/tmp"]  # noqa: S108


def _tmp_read_only(spec: dict) -> None:
    for m in spec["executor"]["volumeMounts"]:
        if m["mountPath"] == "/tmp":  # noqa: S108
            m["readOnly"] = True


def _tmp_from_config_map(spec: dict) -> None:
    for v in spec["volumes"]:
        if v["name"] == "tmp":
            v.pop("emptyDir")
            v["configMap"] = {"name": "citysense-config"}


@pytest.mark.parametrize(("mutate", "needle"), [
    (_drop_tmp_mount, "java.io.tmpdir=/tmp is on the read-only root filesystem"),
    (_tmp_read_only, "executor: java.io.tmpdir=/tmp is mounted read-only"),
    (_tmp_from_config_map, "is on a configMap volume"),
], ids=["no /tmp volume", "/tmp read-only", "/tmp from a configMap"])  # noqa: S108
def test_a_pod_without_a_place_for_native_libraries_is_caught(mutate, needle: str) -> None:  # noqa: ANN001
    problems = native_library_problems(_mutated(mutate))
    assert problems and all(needle in p or "driver" in p for p in problems), problems
    assert any(needle in p for p in problems), problems


@pytest.mark.parametrize(("values", "needle"), [
    # java.io.tmpdir moved onto the image's read-only filesystem through the chart's own values.
    ({"scorer.sparkConf": {"spark.executor.extraJavaOptions": "-Djava.io.tmpdir=/opt/spark/jars"}},
     "executor: java.io.tmpdir=/opt/spark/jars is on the read-only root filesystem"),
    ({"scorer.extraEnv": [{"name": "ROCKSDB_SHAREDLIB_DIR", "value": "/etc/citysense/native"}]},
     "ROCKSDB_SHAREDLIB_DIR=/etc/citysense/native is mounted read-only (config)"),
    ({"scorer.extraEnv": [{"name": "JAVA_TOOL_OPTIONS", "value": "-Xss4m -Djava.io.tmpdir=/var/tmp"}]},
     "java.io.tmpdir=/var/tmp is on the read-only root filesystem"),
], ids=["tmpdir via sparkConf", "RocksDB dir on the config map", "tmpdir via JAVA_TOOL_OPTIONS"])
def test_values_that_move_the_native_library_directory_off_a_volume_are_caught(values: dict, needle: str) -> None:
    problems = native_library_problems(render(values=values))
    assert any(needle in p for p in problems), problems
    # ...and a writable volume there is fine again: ROCKSDB_SHAREDLIB_DIR under /tmp.
    assert native_library_problems(render(values={"scorer.extraEnv": [
        {"name": "ROCKSDB_SHAREDLIB_DIR", "value": "/tmp/native"}]})) == []  # noqa: S108


def test_a_root_user_is_reported() -> None:
    def as_root(spec: dict) -> None:
        spec["driver"]["podSecurityContext"]["runAsUser"] = 0

    assert any(re.search(r"driver: read-only root but runs as root", p)
               for p in native_library_problems(_mutated(as_root)))
