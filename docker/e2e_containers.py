"""Container end-to-end run (called by docker/e2e-containers.sh after the base images exist).

Builds the four service images and the broker image, starts the broker, simulator, scorer, alert API and notifier
as containers on the host network (read-only root filesystems, no capabilities, non-root), subscribes a webhook
receiver running on this host through the API, makes one station exceed the PM2.5 critical threshold, and waits for
a signed `io.citysense.alert.opened` CloudEvent. The store is SQLite on a shared bind mount (no Cassandra here).

A service whose package has no command yet (work in progress) is reported as MISSING and the run fails, unless
--allow-missing is given: then, without a scorer, the alert is injected on the alerts topic so the API -> notifier
-> webhook path is still exercised, and the summary says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
TAG = "e2e"
SERVICES = ["simulator", "scorer", "alert-api", "notifier"]
COMMANDS = {"simulator": "citysense_simulator.cli", "scorer": "citysense_scorer.cli",
            "alert-api": "citysense_alert_api.cli", "notifier": "citysense_notifier.cli"}
PREFIX = f"citysense-e2e-{uuid.uuid4().hex[:6]}"


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"command failed: {' '.join(args[:6])} ...")
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build(name: str, dockerfile: str) -> None:
    started = time.monotonic()
    run("docker", "build", "--network", "host", "-q", "-f", dockerfile, "-t", f"citysense/{name}:{TAG}", str(REPO))
    log(f"built citysense/{name}:{TAG} in {time.monotonic() - started:.0f}s")


def has_command(service: str) -> bool:
    probe = run("docker", "run", "--rm", "--network", "host", "--entrypoint", "python", f"citysense/{service}:{TAG}",
                "-c", f"import importlib.util,sys; sys.exit(importlib.util.find_spec('{COMMANDS[service]}') is None)",
                check=False)
    return probe.returncode == 0


def start(name: str, image: str, env: dict[str, str], args: list[str], data: Path | None = None,
          user: str | None = None) -> str:
    cmd = ["docker", "run", "-d", "--name", f"{PREFIX}-{name}", "--network", "host", "--read-only",
           "--tmpfs", "/tmp:rw,size=512m",  # noqa: S108 - a container tmpfs, not a host path
           "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    if user:
        cmd += ["--user", user]
    if data is not None:
        cmd += ["-v", f"{data}:/var/lib/citysense"]
    else:
        cmd += ["--tmpfs", "/var/lib/citysense:rw,size=64m,uid=10001,gid=10001"]
    for key, value in env.items():
        cmd += ["-e", f"{key}={value}"]
    run(*cmd, image, *args)
    log(f"started {name} ({image})")
    return f"{PREFIX}-{name}"


class Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.received.append({"headers": dict(self.headers), "body": json.loads(body or b"{}")})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--allow-missing", action="store_true", help="run with the services that exist")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to wait for the webhook")
    parser.add_argument("--keep", action="store_true", help="leave the containers running")
    args = parser.parse_args()

    for service in SERVICES:
        build(service, f"services/{service}/Dockerfile")
    build("broker", "docker/broker/Dockerfile")
    present = {s: has_command(s) for s in SERVICES}
    missing = [s for s, ok in present.items() if not ok]
    if missing:
        log(f"MISSING (package has no command yet): {', '.join(missing)}")
        if not args.allow_missing:
            raise SystemExit("services missing; rerun with --allow-missing to exercise the rest")

    data = Path(tempfile.mkdtemp(prefix="citysense-e2e-"))
    data.chmod(0o777)
    containers: list[str] = []
    kafka_port, api_port, hook_port = free_port(), free_port(), free_port()
    bootstrap = f"127.0.0.1:{kafka_port}"
    token = uuid.uuid4().hex + uuid.uuid4().hex
    station_prefix = "e2e"
    common = {
        "CITYSENSE_KAFKA_BOOTSTRAP": bootstrap, "CITYSENSE_STORE": "sqlite", "CITYSENSE_LOG_FORMAT": "text",
        "CITYSENSE_ENV": "production", "CITYSENSE_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
    }
    server = ThreadingHTTPServer(("127.0.0.1", hook_port), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ok = False
    try:
        url = f"kafka://127.0.0.1:{kafka_port}"
        containers.append(start("broker", f"citysense/broker:{TAG}",
                                {}, ["--listener-url", url, "--advertised-listener-url", url,
                                     "--storage-engine", "memory://tansu/"]))
        sys.path.insert(0, str(REPO / "libs" / "common" / "src"))
        from citysense_common.kafka import TopicSpec, ensure_topics, wait_for_broker

        wait_for_broker(bootstrap, timeout=60)
        ensure_topics(bootstrap, [TopicSpec("citysense.readings", 6), TopicSpec("citysense.alerts", 3),
                                  TopicSpec("citysense.readings.dlq", 1), TopicSpec("citysense.webhook-tests", 1)])
        log("broker up, topics created")
        if present["alert-api"]:
            containers.append(start("alert-api", f"citysense/alert-api:{TAG}",
                                    {**common, "CITYSENSE_API_PORT": str(api_port), "CITYSENSE_API_TOKEN": token},
                                    [], data))
        if present["notifier"]:
            containers.append(start("notifier", f"citysense/notifier:{TAG}",
                                    {**common, "CITYSENSE_NOTIFIER_METRICS_PORT": str(free_port())}, [], data))
        if present["scorer"]:
            containers.append(start("scorer", f"citysense/scorer:{TAG}", common,
                                    ["citysense-scorer", "stream"], data, user="185:185"))
        scenario = "pollution:stations=0"
        if present["simulator"]:
            containers.append(start("simulator", f"citysense/simulator:{TAG}",
                                    {**common, "CITYSENSE_STATIONS": "20", "CITYSENSE_INSTANCE_ID": "e2e-0",
                                     "CITYSENSE_SIMULATOR_METRICS_PORT": str(free_port())},
                                    ["run", "--scenario", scenario]))
        if not present["alert-api"] or not present["notifier"]:
            raise SystemExit("the API and the notifier are needed to subscribe and deliver")

        api = f"http://127.0.0.1:{api_port}"
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise SystemExit("alert API never became healthy")
        sub = httpx.post(f"{api}/v1/subscriptions", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                         json={"url": f"http://127.0.0.1:{hook_port}/hook", "description": "e2e"})
        if sub.status_code != 201:
            raise SystemExit(f"subscription refused: {sub.status_code} {sub.text}")
        log(f"subscribed webhook receiver (subscription {sub.json().get('id')})")

        if not present["scorer"]:
            from citysense_common.contract import AlertEvent
            from confluent_kafka import Producer

            now = datetime.now(UTC)
            event = AlertEvent(event_id=uuid.uuid4().hex, alert_id=uuid.uuid4().hex, state="open", kind="threshold",
                               severity="critical", rule_id="e2e-injected", station_id=f"{station_prefix}-0",
                               metric="pm2_5", value=500.0, threshold=250.0, window="1m", opened_at=now,
                               event_time=now, message="PM2.5 500 µg/m³ (injected: no scorer image yet)")
            time.sleep(5)  # the notifier joins its consumer group
            producer = Producer({"bootstrap.servers": bootstrap})
            producer.produce("citysense.alerts", key=event.station_id, value=event.to_json())
            producer.flush(10)
            log("scorer missing: injected one alert event on citysense.alerts")

        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            opened = [r for r in Receiver.received if r["body"].get("type") == "io.citysense.alert.opened"]
            if opened:
                hook = opened[0]
                assert hook["headers"].get("webhook-signature", "").startswith("v1,"), hook["headers"]
                log(f"webhook received: {hook['body']['type']} subject={hook['body'].get('subject')} "
                    f"signature={hook['headers']['webhook-signature'][:12]}...")
                ok = True
                break
            time.sleep(1)
    finally:
        for name in containers:
            state = run("docker", "inspect", "-f", "{{.State.Status}} exit={{.State.ExitCode}}", name, check=False)
            log(f"{name}: {state.stdout.strip()}")
            if not ok:
                tail = run("docker", "logs", "--tail", "15", name, check=False)
                print((tail.stdout + tail.stderr).rstrip())
        if not args.keep:
            for name in containers:
                run("docker", "rm", "-f", name, check=False)
            shutil.rmtree(data, ignore_errors=True)
        server.shutdown()
    ran = [s for s in SERVICES if present[s]]
    verdict = "PASS" if ok else "FAIL"
    print(f"e2e-containers {verdict}: ran broker + {', '.join(ran)}"
          + (f"; missing: {', '.join(missing)} (alert injected)" if missing else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
