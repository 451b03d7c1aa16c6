"""`make up` (citysense-stack up): everything starts, readings flow, and stopping leaves no process behind."""

from __future__ import annotations

import json
import os
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
           "CITYSENSE_MAIL_SINK_PORT": str(free_port()), **extra_env}
    for name in ("CITYSENSE_KAFKA_BOOTSTRAP", "CITYSENSE_CASSANDRA_HOSTS", "CITYSENSE_SMTP_HOST"):
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
    assert set(state["components"]) == {"scorer", "alert-api", "mail-sink", "notifier", "simulator"}
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
    for name in ("simulator", "notifier", "mail-sink", "alert-api", "scorer"):
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
