"""Container end-to-end run (called by docker/e2e-containers.sh after the base images and wheelhouses exist).

Builds the four service images and the broker image (Apache Kafka, one KRaft node), starts the broker, alert API,
notifier, scorer and simulator as containers on the host network (read-only root filesystems, all capabilities
dropped, no-new-privileges, non-root), subscribes a webhook receiver running on this host through the API, lets the
simulator drive one station's PM2.5 to 400 µg/m³ (`pollution:stations=1,ramp=0,peak=400`), and waits until the
scorer's critical PM2.5 alert arrives at the receiver as an `io.citysense.alert.opened` CloudEvent whose Standard
Webhooks signature verifies against the secret the API returned. The store is SQLite on a directory shared by scorer,
API and notifier (no Cassandra here); the run also reads the alert and the station's readings back through the API.

A service whose package has no command yet (work in progress) is reported as MISSING and the run fails, unless
--allow-missing is given: then, without a scorer, one alert is injected on the alerts topic so the API -> notifier
-> webhook path is still exercised, and the summary says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "libs" / "common" / "src"))
from citysense_common.testing.webhook_receiver import Received, WebhookReceiver  # noqa: E402

TAG = "e2e"
SERVICES = ["simulator", "scorer", "alert-api", "notifier"]
COMMANDS = {"simulator": "citysense_simulator.cli", "scorer": "citysense_scorer.cli",
            "alert-api": "citysense_alert_api.cli", "notifier": "citysense_notifier.cli"}
# What each image must not contain (only its own service's dependencies).
FORBIDDEN = {"simulator": ["pyspark", "fastapi", "cassandra"], "scorer": ["fastapi", "uvicorn", "httpx"],
             "alert-api": ["pyspark", "pandas"], "notifier": ["pyspark", "fastapi"]}
USERS = {"simulator": "10001", "scorer": "185", "alert-api": "10001", "notifier": "10001"}
SCENARIO = "pollution:stations=1,ramp=0,peak=400"
PREFIX = f"citysense-e2e-{uuid.uuid4().hex[:6]}"
T0 = time.monotonic()
TIMINGS: dict[str, float] = {}


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')} +{time.monotonic() - T0:4.0f}s] {msg}", flush=True)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"command failed: {' '.join(args[:8])} ...")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_images() -> dict[str, str]:
    """The base images of this run, pinned by image ID: {build arg: "sha256:<id>"} for the Dockerfile's base-image
    arguments (PYTHON_IMAGE, SPARK_IMAGE), resolved once from their default tags, which docker/build-base-images.sh
    has just built or kept. Every build then starts FROM exactly these images (the classic builder accepts a local
    image ID in FROM), whatever the tags point to by the time it runs."""
    dockerfile = (REPO / "docker" / "python-service.Dockerfile").read_text(encoding="utf-8")
    pinned = {}
    for arg, tag in re.findall(r"^ARG ([A-Z]+_IMAGE)=(\S+)$", dockerfile, flags=re.MULTILINE):
        pinned[arg] = run("docker", "image", "inspect", "-f", "{{.Id}}", tag).stdout.strip()
        log(f"base {arg}={tag} -> {pinned[arg]}")
    return pinned


def layers(image: str) -> list[str]:
    return json.loads(run("docker", "image", "inspect", "-f", "{{json .RootFS.Layers}}", image).stdout)


def build(name: str, dockerfile: str, offline: bool, *args: str, context: Path = REPO,
          bases: dict[str, str] | None = None) -> None:
    started = time.monotonic()
    extra = ["--build-arg", "PIP_NO_INDEX=1"] if offline else []
    for arg, image_id in (bases or {}).items():
        extra += ["--build-arg", f"{arg}={image_id}"]
    run("docker", "build", "--network", "host", "-q", *extra, *args, "-f", dockerfile, "-t", f"citysense/{name}:{TAG}",
        str(context))
    TIMINGS[f"build {name}"] = time.monotonic() - started
    size = run("docker", "image", "inspect", "-f", "{{.Size}}", f"citysense/{name}:{TAG}").stdout.strip()
    log(f"built citysense/{name}:{TAG} in {TIMINGS[f'build {name}']:.0f}s ({int(size) / 1e6:.0f} MB)")
    # Every image runs on the Python base: its layer chain must start with exactly that image's layers.
    if bases and "PYTHON_IMAGE" in bases:
        base = layers(bases["PYTHON_IMAGE"])
        if layers(f"citysense/{name}:{TAG}")[:len(base)] != base:
            raise SystemExit(f"citysense/{name}:{TAG} is not built on {bases['PYTHON_IMAGE']}")


def probe(service: str) -> tuple[bool, list[str], str]:
    """(has its command, forbidden packages present, user) for a service image."""
    code = ("import importlib.util as u, json, os; "
            f"print(json.dumps([u.find_spec('{COMMANDS[service]}') is not None, "
            f"[m for m in {FORBIDDEN[service]!r} if u.find_spec(m)], os.getuid()]))")
    result = run("docker", "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
                 "--entrypoint", "python", f"citysense/{service}:{TAG}", "-c", code, check=False)
    if result.returncode != 0:
        return False, [], "?"
    present, forbidden, uid = json.loads(result.stdout.strip().splitlines()[-1])
    return present, forbidden, str(uid)


def start(name: str, image: str, env: dict[str, str], args: list[str], data: Path | None = None,
          tmpfs: tuple[str, ...] = (), exec_tmp: bool = False) -> str:
    """Run one container like the chart's pods: read-only root, no capabilities, writable /tmp.

    Docker mounts a --tmpfs noexec unless told ``exec``. A JVM (the scorer) needs /tmp exec-capable: it is
    java.io.tmpdir, where RocksDB (the health state store), zstd-jni and snappy-java extract their native libraries
    and dlopen() them; on a noexec /tmp RocksDB fails with ``UnsatisfiedLinkError ... failed to map segment from
    shared object`` and the scorer exits. Like the chart's /tmp emptyDir, which Kubernetes mounts without noexec
    (tests/charts/test_native_libraries.py). The Python-only services keep a noexec /tmp.
    """
    tmp = "/tmp:rw,exec,size=1g" if exec_tmp else "/tmp:rw,size=1g"  # noqa: S108 - a container tmpfs, not a host path
    cmd = ["docker", "run", "-d", "--name", f"{PREFIX}-{name}", "--network", "host", "--read-only",
           "--tmpfs", tmp, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for mount in tmpfs:
        cmd += ["--tmpfs", mount]
    if data is not None:
        cmd += ["-v", f"{data}:/var/lib/citysense"]
    elif image.startswith("citysense/") and "broker" not in image:
        cmd += ["--tmpfs", "/var/lib/citysense:rw,size=64m,uid=10001,gid=10001"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    result = run(*cmd, image, *args, check=False)
    if result.returncode != 0:
        run("docker", "rm", "-f", f"{PREFIX}-{name}", check=False)  # created but not started: remove it
        raise SystemExit(f"could not start {name} ({image}): {result.stderr.strip()[-600:]}")
    log(f"started {name} ({image}{' ' + ' '.join(args) if args else ''})")
    return f"{PREFIX}-{name}"


def running(name: str) -> bool:
    return run("docker", "inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() == "true"


def wait_healthy(url: str, timeout: float, container: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not running(container):
            raise SystemExit(f"{container} exited before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{url} never answered 200")


def main() -> int:  # noqa: C901, PLR0912, PLR0915 - one linear scenario, easier to read in one piece
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allow-missing", action="store_true", help="run with the services that exist")
    parser.add_argument("--timeout", type=float, default=420, help="seconds to wait for the webhook")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    parser.add_argument("--online", action="store_true",
                        help="let pip inside the builds use PyPI (default: only docker/wheelhouse, PIP_NO_INDEX=1)")
    parser.add_argument("--no-build", action="store_true", help="use the existing citysense/*:e2e images")
    args = parser.parse_args()

    if not args.no_build:
        bases = base_images()
        for service in SERVICES:
            build(service, "docker/python-service.Dockerfile", not args.online,
                  "--build-arg", f"SERVICE={service}", "--target", service, bases=bases)
        # Context docker/broker/: the Kafka jars and config that docker/broker/prepare.py put there (no pip inside).
        build("broker", "docker/broker/Dockerfile", False, context=REPO / "docker" / "broker",
              bases={"PYTHON_IMAGE": bases["PYTHON_IMAGE"]})
    present: dict[str, bool] = {}
    for service in SERVICES:
        has, forbidden, uid = probe(service)
        present[service] = has
        if has and (forbidden or uid != USERS[service]):
            raise SystemExit(f"citysense/{service}:{TAG}: uid {uid} (want {USERS[service]}), "
                             f"foreign packages {forbidden}")
        if has:
            log(f"image {service}: command present, uid {uid}, none of {', '.join(FORBIDDEN[service])}")
    broker_uid, _, kafka_version = run(
        "docker", "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL", "--entrypoint", "sh",
        f"citysense/broker:{TAG}", "-c", "id -u; cat /opt/kafka/config/VERSION", check=False).stdout.partition("\n")
    if broker_uid.strip() in {"", "0"}:
        raise SystemExit(f"citysense/broker:{TAG}: runs as uid {broker_uid.strip() or '?'} (want a non-root user)")
    log(f"image broker: Apache Kafka {kafka_version.strip()}, uid {broker_uid.strip()}")
    missing = [s for s, ok in present.items() if not ok]
    if missing:
        log(f"MISSING (package has no command yet): {', '.join(missing)}")
        if not args.allow_missing:
            raise SystemExit("services missing; rerun with --allow-missing to exercise the rest")

    # Shared store directory. Services run as different users (API and notifier 10001, scorer 185), so the
    # directory is world-writable and the database file is created up front with mode 0666: SQLite gives its
    # -wal and -shm files the database file's permissions. (In Kubernetes the store is Cassandra.)
    data = Path(tempfile.mkdtemp(prefix="citysense-e2e-"))
    data.chmod(0o777)
    (data / "citysense.db").touch(mode=0o666)
    (data / "citysense.db").chmod(0o666)
    containers: list[str] = []
    kafka_port, api_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    token = uuid.uuid4().hex + uuid.uuid4().hex
    common = {
        "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_STORE": "sqlite", "CITYSENSE_LOG_FORMAT": "text",
        "CITYSENSE_ENV": "production", "CITYSENSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "CITYSENSE_CITIZEN_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,  # production requires the link secret
    }
    receiver = WebhookReceiver()  # verifies each delivery once the subscription's secret is known
    ok = False
    evidence: list[str] = []
    try:
        started = time.monotonic()
        # Apache Kafka, one KRaft node on loopback; its log on a tmpfs (formatted at start), /tmp exec for the JNI
        # compression libraries like the scorer's.
        containers.append(start("broker", f"citysense/broker:{TAG}",
                                {"KAFKA_HOST": "127.0.0.1", "KAFKA_ADVERTISED_HOST": "127.0.0.1",
                                 "KAFKA_PORT": str(kafka_port), "KAFKA_CONTROLLER_PORT": str(free_port()),
                                 "KAFKA_OPTS": "-Xmx384m"}, [],
                                tmpfs=("/var/lib/kafka:rw,size=512m,uid=10002,gid=10002,mode=0750",), exec_tmp=True))
        from citysense_common.kafka import BrokerUnavailable, TopicSpec, ensure_topics, wait_for_broker

        try:
            wait_for_broker(bootstrap, timeout=90)
        except BrokerUnavailable:
            if not running(containers[-1]):
                raise SystemExit(f"{containers[-1]} exited while starting") from None
            raise
        ensure_topics(bootstrap, [TopicSpec("citysense.readings", 6), TopicSpec("citysense.alerts", 3),
                                  TopicSpec("citysense.readings.dlq", 1), TopicSpec("citysense.webhook-tests", 1)])
        log("broker up, topics created")
        if not present["alert-api"] or not present["notifier"]:
            raise SystemExit("the API and the notifier are needed to subscribe and deliver")
        containers.append(start("alert-api", f"citysense/alert-api:{TAG}",
                                {**common, "CITYSENSE_API_PORT": str(api_port), "CITYSENSE_API_TOKEN": token},
                                [], data))
        api = f"http://127.0.0.1:{api_port}"
        wait_healthy(f"{api}/healthz", 90, containers[-1])
        log("alert API healthy")
        containers.append(start("notifier", f"citysense/notifier:{TAG}",
                                {**common, "CITYSENSE_NOTIFIER_METRICS_PORT": str(free_port())}, [], data))
        sub = httpx.post(f"{api}/v1/subscriptions", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                         json={"url": receiver.url, "description": "e2e"})
        if sub.status_code != 201:
            raise SystemExit(f"subscription refused: {sub.status_code} {sub.text}")
        receiver.secret = sub.json()["secret"]
        log(f"subscribed webhook receiver (subscription {sub.json().get('id')})")
        if present["scorer"]:
            containers.append(start(
                "scorer", f"citysense/scorer:{TAG}",
                {**common, "CITYSENSE_SCORER_METRICS_PORT": str(free_port())}, ["citysense-scorer", "stream"], data,
                tmpfs=("/opt/spark-work-dir:rw,size=256m,uid=185,gid=185,mode=0775",), exec_tmp=True))
        TIMINGS["start broker, API, notifier, scorer"] = time.monotonic() - started

        polluted: str | None = None
        driven_wall = time.time()  # the receiver stamps deliveries with time.time()
        if present["simulator"]:
            containers.append(start("simulator", f"citysense/simulator:{TAG}",
                                    {**common, "CITYSENSE_STATIONS": "5", "CITYSENSE_INSTANCE_ID": "e2e-0",
                                     "CITYSENSE_SIMULATOR_METRICS_PORT": str(free_port())},
                                    ["run", "--scenario", SCENARIO if present["scorer"] else "pollution:stations=0"]))
        if not present["scorer"]:
            from citysense_common.contract import AlertEvent
            from confluent_kafka import Producer

            now = datetime.now(UTC)
            polluted = "e2e-injected-00000"
            event = AlertEvent(event_id=uuid.uuid4().hex, alert_id=uuid.uuid4().hex, state="open", kind="threshold",
                               severity="critical", rule_id="e2e-injected", station_id=polluted,
                               metric="pm2_5", value=500.0, threshold=250.0, window="1m", opened_at=now,
                               event_time=now, message="PM2.5 500 µg/m³ (injected: no scorer image yet)")
            time.sleep(5)  # the notifier joins its consumer group
            producer = Producer({"bootstrap.servers": bootstrap})
            producer.produce("citysense.alerts", key=event.station_id, value=event.to_json())
            producer.flush(10)
            log("scorer missing: injected one alert event on citysense.alerts")

        def wanted(r: Received) -> bool:
            body, data_ = r.payload or {}, (r.payload or {}).get("data") or {}
            return (body.get("type") == "io.citysense.alert.opened" and data_.get("metric") == "pm2_5"
                    and data_.get("severity") == "critical"
                    and (polluted is None or data_.get("station_id") == polluted)
                    and (polluted is not None or str(data_.get("station_id", "")).endswith("-00000")))

        def all_running() -> None:
            for name in containers:
                if not running(name):
                    raise SystemExit(f"{name} exited while waiting for the webhook")

        hook = receiver.wait_until(wanted, args.timeout, alive=all_running)
        if hook is None:
            raise SystemExit(f"no critical PM2.5 io.citysense.alert.opened webhook within {args.timeout:.0f}s "
                             f"({len(receiver.received())} other deliveries)")
        TIMINGS["simulator start -> signed webhook"] = hook.at - driven_wall
        body, alert = hook.payload, hook.payload["data"]
        if not hook.verified:
            raise SystemExit(f"webhook signature does not verify: {hook.headers}")
        evidence.append(f"webhook {body['type']} id={body.get('id')} subject={body.get('subject')} "
                        f"rule={alert.get('rule_id')} severity={alert.get('severity')} value={alert.get('value')} "
                        f"threshold={alert.get('threshold')}")
        evidence.append(f"signature verified (Standard Webhooks v1, webhook-id={hook.webhook_id})")
        log(evidence[0])
        log(evidence[1])
        if present["scorer"]:
            # The API serves the alert (recorded from its event) and the readings (stored by the scorer's micro-batch
            # query, which may come a few seconds after the real-time path's alert).
            got = httpx.get(f"{api}/v1/alerts/{alert['alert_id']}", timeout=10)
            if got.status_code != 200:
                raise SystemExit(f"alert {alert['alert_id']} not served by the API: {got.status_code} {got.text}")
            deadline = time.monotonic() + 60
            while True:
                readings = httpx.get(f"{api}/v1/stations/{alert['station_id']}/readings", timeout=10)
                if readings.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(1)
            if readings.status_code != 200:
                raise SystemExit(f"readings not served within 60 s: {readings.status_code} {readings.text[:300]}")
            items = readings.json().get("items", [])
            pm = [m["metrics"]["pm2_5"] for m in items if "pm2_5" in m.get("metrics", {})]
            evidence.append(f"API GET /v1/alerts/{alert['alert_id']}: state={got.json().get('state')}; "
                            f"GET /v1/stations/{alert['station_id']}/readings: {len(items)} readings "
                            f"(pm2_5 max {max(pm, default=None)})")
            log(evidence[-1])
        ok = True
    finally:
        for name in containers:
            state = run("docker", "inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}} "
                        "readonly={{.HostConfig.ReadonlyRootfs}} user={{.Config.User}} capdrop={{.HostConfig.CapDrop}}",
                        name, check=False)
            log(f"{name}: {state.stdout.strip()}")
            if not ok or os.environ.get("CITYSENSE_E2E_LOGS"):
                tail = run("docker", "logs", "--tail", "25", name, check=False)
                print((tail.stdout + tail.stderr).rstrip())
        if not args.keep:
            for name in containers:
                run("docker", "rm", "-f", name, check=False)
            shutil.rmtree(data, ignore_errors=True)
        receiver.close()
    ran = [s for s in SERVICES if present[s]]
    for what, seconds in TIMINGS.items():
        print(f"  {what:<40} {seconds:6.1f}s")
    print(f"  {'total':<40} {time.monotonic() - T0:6.1f}s")
    verdict = "PASS" if ok else "FAIL"
    print(f"e2e-containers {verdict}: broker + {', '.join(ran)}"
          + (f"; missing: {', '.join(missing)} (alert injected)" if missing else
             f"; scenario {SCENARIO} -> scorer alert -> notifier -> signed webhook"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
