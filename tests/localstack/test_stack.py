"""`make up` (citysense-stack up): everything starts, readings flow, and stopping leaves no process behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from citysense_common.contract import parse_reading
from citysense_common.kafka import default_topics
from citysense_common.settings import CommonSettings
from citysense_localstack.servers.net import free_port
from confluent_kafka import Consumer, TopicPartition

REPO = Path(__file__).resolve().parents[2]
STACK = [sys.executable, "-m", "citysense_localstack.cli", "up"]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def start_stack(tmp_path: Path, components: str, stations: int = 20, output: list[str] | None = None,
                **extra_env: str) -> tuple[subprocess.Popen, dict, int]:
    """Start `citysense-stack up`; return once it prints its summary (the lines read so far go to ``output``)."""
    kafka_port = free_port()
    env = {**os.environ, "CITYSENSE_DATA_DIR": str(tmp_path / "data"), "CITYSENSE_KAFKA_PORT": str(kafka_port),
           "CITYSENSE_API_PORT": str(free_port()), "CITYSENSE_STATIONS": str(stations),
           "CITYSENSE_COMPONENTS": components, "CITYSENSE_SIMULATOR_METRICS_PORT": "0",
           "CITYSENSE_SCORER_METRICS_PORT": "0", "CITYSENSE_NOTIFIER_METRICS_PORT": "0",
           "CITYSENSE_MAIL_SINK_PORT": str(free_port()), "CITYSENSE_MQTT_BROKER_PORT": str(free_port()), **extra_env}
    for name in ("CITYSENSE_KAFKA_BOOTSTRAP", "CITYSENSE_CASSANDRA_HOSTS", "CITYSENSE_SMTP_HOST",
                 "CITYSENSE_MQTT_HOST"):
        if name not in extra_env:
            env.pop(name, None)
    proc = subprocess.Popen(STACK, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = [] if output is None else output
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        output.append(line)
        if "Ctrl-C stops everything" in line:
            state = json.loads((tmp_path / "data" / "stack.json").read_text())
            return proc, state, kafka_port
    proc.kill()
    pytest.fail("stack did not come up:\n" + "".join(output))


def all_pids(state: dict) -> list[int]:
    return [state["broker"], *state["components"].values()]


def read_some(port: int, count: int) -> list:
    consumer = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "t", "enable.auto.commit": False})
    readings = default_topics(CommonSettings())[0]
    consumer.assign([TopicPartition(readings.name, p, 0) for p in range(readings.partitions)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < count and time.monotonic() < deadline:
        got.extend(m for m in consumer.consume(100, timeout=0.5) if not m.error())
    consumer.close()
    return got


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_stack_runs_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    proc, state, port = start_stack(tmp_path, "simulator")
    pids = all_pids(state)
    assert all(alive(pid) for pid in pids)
    readings = read_some(port, 40)
    assert len(readings) >= 40
    assert len({parse_reading(m.value()).station_id for m in readings}) == 20

    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped simulator (exit 0)" in out and "stopped kafka" in out
    assert not [pid for pid in pids if alive(pid)]
    assert not [m for pid in pids for m in group_members(pid)]  # no grandchildren left either


def test_repeated_ctrl_c_still_stops_everything(tmp_path: Path) -> None:
    """Two quick Ctrl-Cs (or `timeout -s INT`, which signals the child and its group) once deadlocked the launcher,
    and a Ctrl-C arriving after the clean stop, while Python shut down, killed it with -SIGINT."""
    proc, state, _ = start_stack(tmp_path, "simulator")
    pids = all_pids(state)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:  # keep pressing until it has exited
        try:
            proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            break
        time.sleep(0.002)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.count("received SIGINT; stopping") == 1
    assert not [pid for pid in pids if alive(pid)]


def test_children_die_with_a_killed_launcher(tmp_path: Path) -> None:
    proc, state, _ = start_stack(tmp_path, "simulator")
    pids = all_pids(state)
    proc.kill()  # SIGKILL: the launcher gets no chance to clean up
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.2)
    assert not [pid for pid in pids if alive(pid)]


def test_crashed_component_is_restarted(tmp_path: Path) -> None:
    proc, state, _ = start_stack(tmp_path, "simulator")
    simulator = state["components"]["simulator"]
    os.kill(simulator, signal.SIGKILL)
    deadline, restarted = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        current = json.loads((tmp_path / "data" / "stack.json").read_text())["components"]["simulator"]
        if current != simulator and alive(current):
            restarted = current
            break
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert restarted is not None, out
    assert "simulator exited with code -9; restarting" in out
    assert not alive(restarted)


def test_kafka_that_dies_is_restarted_on_its_port_and_data(tmp_path: Path) -> None:
    proc, state, port = start_stack(tmp_path, "simulator", stations=5)
    try:
        first = read_some(port, 10)
        os.kill(state["broker"], signal.SIGKILL)
        deadline, restarted = time.monotonic() + 90, None
        while time.monotonic() < deadline:
            current = json.loads((tmp_path / "data" / "stack.json").read_text())["broker"]
            if current != state["broker"] and alive(current):
                restarted = current
                break
            time.sleep(0.3)
        assert restarted is not None, "Kafka was not restarted"
        after = read_some(port, len(first) + 50)  # the same log (kept readings) plus new ones from the simulator
        assert len(after) >= len(first) + 50
        assert {(m.partition(), m.offset()) for m in first} <= {(m.partition(), m.offset()) for m in after}
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    assert "Kafka exited (code -9); restarting it" in out
    assert proc.returncode == 0, out


def test_cassandra_store_runs_the_pipeline_and_the_api_serves_it(tmp_path: Path) -> None:
    """CITYSENSE_STORE=cassandra: a local Cassandra node under DATA_DIR/cassandra, migrated, and readings from the
    simulator through Kafka and the scorer served by the API."""
    import urllib.request

    from citysense_common.jvm.components import CASSANDRA, KAFKA

    api_port = free_port()
    lines: list[str] = []
    proc, state, _ = start_stack(tmp_path, "scorer,alert-api,simulator", stations=3, output=lines,
                                 CITYSENSE_STORE="cassandra", CITYSENSE_CASSANDRA_PORT=str(free_port()),
                                 CITYSENSE_API_PORT=str(api_port))
    pids = all_pids(state) + [state["cassandra"]]

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}{path}", timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    try:
        summary = "".join(lines)
        assert f"{CASSANDRA.title} {CASSANDRA.version}" in summary and f"{KAFKA.title} {KAFKA.version}" in summary
        assert (tmp_path / "data" / "cassandra").is_dir()
        deadline, stations = time.monotonic() + 300, []
        while time.monotonic() < deadline and len(stations) < 3:
            assert proc.poll() is None, "".join(lines)
            stations = get("/v1/stations")["items"]
            time.sleep(2)
        assert len(stations) == 3, "the API never listed the simulated stations"
        page = get(f"/v1/stations/{stations[0]['id']}/readings?limit=5")
        assert page["station_id"] == stations[0]["id"] and len(page["items"]) == 5
        assert "items" in get("/v1/alerts")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "stopped cassandra" in out
    assert not [pid for pid in pids if alive(pid)]


def test_port_in_use_is_explained(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {**os.environ, "CITYSENSE_DATA_DIR": str(tmp_path), "CITYSENSE_KAFKA_PORT": str(busy.getsockname()[1]),
               "CITYSENSE_COMPONENTS": "simulator"}
        env.pop("CITYSENSE_KAFKA_BOOTSTRAP", None)
        done = subprocess.run(STACK, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "already in use; set CITYSENSE_KAFKA_PORT" in done.stderr


def test_full_stack_stops_without_orphans(tmp_path: Path) -> None:
    # Every component, the scorer's JVM included: Ctrl-C must leave no process of any group behind.
    proc, state, port = start_stack(tmp_path, "scorer,alert-api,notifier,simulator", stations=5)
    pids = all_pids(state)
    assert set(state["components"]) == {"scorer", "alert-api", "mail-sink", "mqtt-broker", "notifier", "simulator"}
    assert len(read_some(port, 10)) >= 10
    scorer = state["components"]["scorer"]
    deadline = time.monotonic() + 180
    while not any("java" in Path(f"/proc/{m}/cmdline").read_bytes().decode(errors="replace")
                  for m in group_members(scorer) if Path(f"/proc/{m}/cmdline").exists()):
        assert time.monotonic() < deadline, "the scorer's JVM never started"
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    for name in ("simulator", "notifier", "mqtt-broker", "mail-sink", "alert-api", "scorer"):
        assert f"stopped {name}" in out
    assert not [pid for pid in pids if alive(pid)]
    assert not [m for pid in pids for m in group_members(pid)], out


def test_stop_flag_set_from_a_signal_handler_wakes_a_waiter() -> None:
    from citysense_localstack.stack import StopFlag

    flag = StopFlag(poll_s=0.01)
    assert flag.wait(0.05) is False
    previous = signal.signal(signal.SIGALRM, lambda *_: flag.set())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.001)  # a storm of signals, each one setting the flag again
        assert flag.wait(10) is True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert flag.is_set()


def test_email_links_lead_to_the_stacks_api_port(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from citysense_localstack.stack import Stack, StackSettings

    monkeypatch.delenv("CITYSENSE_CITIZEN_PUBLIC_URL", raising=False)
    stack = Stack(StackSettings(data_dir=tmp_path, api_port=8123))
    assert stack.child_env()["CITYSENSE_CITIZEN_PUBLIC_URL"] == "http://127.0.0.1:8123"
    monkeypatch.setenv("CITYSENSE_CITIZEN_PUBLIC_URL", "https://air.example")
    assert stack.child_env()["CITYSENSE_CITIZEN_PUBLIC_URL"] == "https://air.example"


def test_email_goes_to_the_local_mail_sink_unless_a_server_is_set(tmp_path: Path) -> None:
    from citysense_localstack.stack import Stack, StackSettings

    stack = Stack(StackSettings(data_dir=tmp_path, mail_sink_port=2626, smtp_host=None))
    names = [c.name for c in stack.components]
    assert names.index("mail-sink") < names.index("notifier")  # it listens before the notifier sends
    env = stack.child_env()
    assert (env["CITYSENSE_SMTP_HOST"], env["CITYSENSE_SMTP_PORT"], env["CITYSENSE_SMTP_SECURITY"]) == (
        "127.0.0.1", "2626", "none")
    sink = next(c for c in stack.components if c.name == "mail-sink")
    assert sink.argv[-2:] == ["--dir", str(tmp_path.resolve() / "mail")]
    summary = stack.summary()
    assert "LOCAL DEVELOPMENT MAIL SINK, nothing is delivered" in summary
    assert f"{tmp_path.resolve() / 'mail'}/" in summary and "CITYSENSE_SMTP_HOST" in summary

    real = Stack(StackSettings(data_dir=tmp_path, smtp_host="smtp.city.example"))
    assert "mail-sink" not in [c.name for c in real.components]
    assert "Email: through the SMTP server smtp.city.example" in real.summary()
    without_notifier = Stack(StackSettings(data_dir=tmp_path, smtp_host=None, components="alert-api"))
    assert [c.name for c in without_notifier.components] == ["alert-api"]


def _mosquitto() -> str:
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(path).is_file():
        pytest.fail("Debian's mosquitto is not installed: run scripts/bootstrap.d/52-mosquitto")
    return path


def test_public_alerts_go_to_a_local_mqtt_broker_unless_one_is_set(tmp_path: Path) -> None:
    from citysense_localstack.stack import Stack, StackSettings, mqtt_config, write_mqtt_config

    _mosquitto()
    settings = StackSettings(data_dir=tmp_path, mqtt_broker_port=2883, mqtt_host=None)
    stack = Stack(settings)
    names = [c.name for c in stack.components]
    assert names.index("mqtt-broker") < names.index("notifier")  # it listens before the notifier publishes
    env = stack.child_env()
    assert (env["CITYSENSE_MQTT_HOST"], env["CITYSENSE_MQTT_PORT"]) == ("127.0.0.1", "2883")
    write_mqtt_config(settings)
    conf = mqtt_config(settings).read_text()
    assert "listener 2883 127.0.0.1" in conf and "persistence false" in conf  # loopback only, nothing on disk
    assert "mosquitto_sub -p 2883 -t 'citysense/alerts/#'" in stack.summary()

    own = Stack(StackSettings(data_dir=tmp_path, mqtt_host="mqtt.city.example"))
    assert "mqtt-broker" not in [c.name for c in own.components]
    assert own.child_env().get("CITYSENSE_MQTT_HOST") in (None, "mqtt.city.example")  # the user's, untouched


def test_an_episode_reaches_the_cap_feed_a_subscribers_email_and_mqtt(tmp_path: Path) -> None:
    """The issue's walkthrough on `make up`'s stack: a PM2.5 alert and its resolve, as the scorer writes them to the
    alerts topic, reach the CAP feed (valid CAP 1.2), the email of the one confirmed subscriber whose area covers the
    station (through the local mail sink) and the area's MQTT topic (through the local broker)."""
    import email
    import email.policy
    import urllib.request
    from datetime import UTC, datetime, timedelta

    from citysense_common import geohash
    from citysense_common.contract import AlertEvent, AlertKind, AlertState, Location, Severity
    from citysense_common.store import AreaSubscription
    from citysense_common.store.factory import open_store
    from citysense_common.store.settings import StoreSettings
    from confluent_kafka import Producer

    from tests.alert_api.test_cap_messages import validate
    from tests.notifier.test_mqtt import Subscriber

    _mosquitto()
    api_port, mqtt_port = free_port(), free_port()
    proc, state, kafka_port = start_stack(tmp_path, "alert-api,notifier", stations=0,
                                          CITYSENSE_API_PORT=str(api_port), CITYSENSE_MQTT_BROKER_PORT=str(mqtt_port))
    data = tmp_path / "data"
    try:
        assert {"mail-sink", "mqtt-broker"} <= set(state["components"])
        store = open_store(StoreSettings(data_dir=data))
        now = datetime.now(UTC)
        for name, lat in (("near", 48.87), ("far", 48.95)):  # 1.5 km and 10 km north of the station, radius 2 km
            store.create_area_subscription(AreaSubscription(
                id=f"as_{name}", email=f"{name}@example.org", lat=lat, lon=2.3522, radius_km=2, min_severity="warning",
                language="en", status="confirmed", created_at=now, confirmed_at=now))
        store.close()
        mqtt = Subscriber(mqtt_port, "citysense/alerts/#")
        producer = Producer({"bootstrap.servers": f"127.0.0.1:{kafka_port}"})

        def publish(state_: AlertState, value: float, at: datetime) -> AlertEvent:
            event = AlertEvent(
                event_id=f"ev-{state_.value}", alert_id="al-walk", state=state_, kind=AlertKind.THRESHOLD,
                severity=Severity.CRITICAL, rule_id="pm25-epa-aqi-1h", station_id="st-walk",
                location=Location(lat=48.8566, lon=2.3522), metric="pm2_5", value=value, threshold=125.4, window="1h",
                opened_at=now, event_time=at, message=f"PM2.5 1-hour mean {value} µg/m³",
                resolved_at=at if state_ is AlertState.RESOLVED else None)
            producer.produce("citysense.alerts", key=b"st-walk", value=event.to_json())
            assert producer.flush(10) == 0
            return event

        def cap_message() -> bytes:
            url = f"http://127.0.0.1:{api_port}/v1/cap/alerts/al-walk.xml"
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
                return response.read()

        def mails() -> list[email.message.EmailMessage]:
            return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                    for p in sorted((data / "mail").glob("*.eml"))]

        def wait(what: str, check, timeout: float = 60.0):  # noqa: ANN001, ANN202
            deadline = time.monotonic() + timeout
            while True:
                try:
                    found = check()
                except OSError:
                    found = None
                if found:
                    return found
                assert time.monotonic() < deadline, f"{what} did not arrive"
                time.sleep(0.2)

        area = f"citysense/alerts/{geohash.encode(48.8566, 2.3522, 5)}/critical"
        publish(AlertState.OPEN, 140.3, now)
        opened = mqtt.wait_for(lambda m: m.topic == area and b'"open"' in m.payload, timeout=60)
        assert opened.qos == 1
        warning = wait("the warning email", lambda: [m for m in mails() if m["To"] == "near@example.org"])
        assert warning[0]["Subject"].startswith("Air pollution (PM2.5)")
        root = validate(wait("the CAP Alert", cap_message))
        assert root.findtext("{urn:oasis:names:tc:emergency:cap:1.2}msgType") == "Alert"

        publish(AlertState.RESOLVED, 20.0, now + timedelta(minutes=30))
        mqtt.wait_for(lambda m: m.topic == area and b'"resolved"' in m.payload, timeout=60)
        wait("the all-clear email", lambda: len([m for m in mails() if m["To"] == "near@example.org"]) == 2)
        cancel = wait("the CAP Cancel", lambda: (lambda r: r if r.findtext(
            "{urn:oasis:names:tc:emergency:cap:1.2}msgType") == "Cancel" else None)(validate(cap_message())))
        assert cancel.findtext("{urn:oasis:names:tc:emergency:cap:1.2}references")
        assert not [m for m in mails() if m["To"] == "far@example.org"]  # outside the station's circle
        mqtt.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
