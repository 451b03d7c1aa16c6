"""Shared plumbing for the pipeline benchmarks (P1, P2/P3/P6, P7) and the soak (R7).

- :class:`StackRun` starts ``citysense-stack up`` in a temporary data dir on free loopback ports and stops it with
  Ctrl-C (SIGINT), then SIGKILLs whatever is left in its process groups;
- :func:`scrape` reads a Prometheus text endpoint into ``{"name{labels}": value}``;
- :meth:`StackRun.rss` sums the memory of every live process in the stack's process groups (the scorer's JVM and
  Spark's Python workers included), as VmRSS (:func:`rss_bytes`) or as PSS (:func:`pss_bytes`);
- :class:`ProbeProducer` sends readings for dedicated probe stations and records when each was produced, keyed by
  (station, ts) so an alert's ``event_time`` finds the reading that triggered it.

Everything talks to 127.0.0.1 only and every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from citysense_localstack.servers.net import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Stack settings a benchmark run may choose from its own environment (every other CITYSENSE_* is the bench's): station
# health and the store.
CHOSEN_SETTINGS = ("CITYSENSE_HEALTH_ENABLED", "CITYSENSE_STORE")


# ---- processes --------------------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _processes() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, process group)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] != "Z":
                out[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return out


def _group_in(pid: int, wanted: set[int], table: dict[int, tuple[int, int]]) -> int | None:
    seen = set()
    while pid in table and pid not in seen:
        seen.add(pid)
        parent, group = table[pid]
        if group in wanted:
            return group
        pid = parent
    return None


def group_of(pid: int, pgids: Iterable[int]) -> int | None:
    """Which of ``pgids`` a process belongs to: its own group, else the group of its nearest ancestor in one."""
    return _group_in(pid, set(pgids), _processes())


def group_members(pgids: Iterable[int]) -> list[int]:
    """Every live process in the groups, and every descendant of one that moved to a group of its own: PySpark's
    daemon does (``os.setpgid(0, 0)``), so Spark's Python workers are outside the scorer's group but are the
    scorer's memory and CPU."""
    wanted, table = set(pgids), _processes()
    return [pid for pid in table if _group_in(pid, wanted, table) is not None]


def _proc_kib_field(path: str, field: str) -> int:
    """Bytes of a ``<field> <n> kB`` line of a /proc file (0 when the process is gone)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    return _proc_kib_field(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int) -> int:
    """Proportional set size: resident pages, each shared page divided among the processes sharing it. Summed over
    processes it is the memory they occupy together; a VmRSS sum counts a page shared by N forked processes (Spark's
    Python daemon and its workers share the interpreter and pandas/pyarrow) N times."""
    return _proc_kib_field(f"/proc/{pid}/smaps_rollup", "Pss:")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    fields = _stat(pid)
    if not fields:
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime


# ---- Prometheus -------------------------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)")


def scrape(port: int, timeout: float = 2.0) -> dict[str, float]:
    """``{"metric{labels}": value}`` from ``http://127.0.0.1:port/metrics``; {} when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            if m:
                try:
                    out[m.group(1)] = float(m.group(2))
                except ValueError:
                    pass
    return out


def metric(samples: dict[str, float], name: str, **labels: str) -> float:
    """One sample (labels must match exactly those given), or the sum over all label sets when none are given."""
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        return samples.get(f"{name}{{{inner}}}", 0.0)
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))


# ---- load generator ---------------------------------------------------------------------------------------------
def start_simulator(run: StackRun, stations: int, rate_hz: float, port: int, tag: str,
                    extra: dict[str, str] | None = None) -> subprocess.Popen:
    """``citysense-simulator run`` against the run's broker, in its own process group, logging to the run's logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
    env.update({"CITYSENSE_KAFKA_BOOTSTRAP": run.bootstrap, "CITYSENSE_STATIONS": str(stations),
                "CITYSENSE_RATE_HZ": f"{rate_hz:g}", "CITYSENSE_INSTANCE_ID": tag,
                "CITYSENSE_SIMULATOR_METRICS_PORT": str(port), "CITYSENSE_LOG_LEVEL": "WARNING", **(extra or {})})
    log = open(run.data_dir / "logs" / f"simulator-{tag}.log", "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen([str(BIN / "citysense-simulator"), "run"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# ---- the stack --------------------------------------------------------------------------------------------------
@dataclass
class StackRun:
    """``citysense-stack up`` with the given components, stations and rate, in a temp dir on free ports."""

    stations: int = 0
    rate_hz: float = 1.0
    components: str = "scorer,alert-api,notifier,simulator"
    scenarios: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 240.0
    keep_dir: bool = False
    # Start the simulator only once the scorer runs (start_load). The launcher starts it right after the scorer's
    # process, whose JVM then takes a minute to start: a backlog of a minute of input that a scorer running near its
    # capacity drains for many minutes, so latency figures would measure that start-up and not the steady state.
    load_after_scorer: bool = False

    def __post_init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="citysense-bench-"))
        self.data_dir = self.tmp / "data"
        self.kafka_port, self.api_port = free_port(), free_port()
        self.scorer_metrics_port, self.simulator_metrics_port = free_port(), free_port()
        self.notifier_metrics_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.simulator: subprocess.Popen | None = None  # with load_after_scorer
        self.state: dict = {}
        self.output: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def alerts_topic(self) -> str:
        return self.extra_env.get("CITYSENSE_ALERTS_TOPIC", "citysense.alerts")

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "api-token").read_text().strip()

    @property
    def launched_components(self) -> str:
        names = self.components.split(",")
        return ",".join(n for n in names if n != "simulator" or not self.load_after_scorer)

    def warm_up_scorer(self) -> None:
        """Until the scorer runs micro-batches, with a few readings from 10 stations to get the first one going (a
        scorer without the health operator runs no batch on an empty topic)."""
        warm = start_simulator(self, 10, 1, free_port(), "warm")
        try:
            self.wait_scorer_running()
        finally:
            stop_group(warm)

    def start_load(self) -> None:
        """With ``load_after_scorer``: once the scorer runs, the simulator at the run's stations and rate, on the
        run's metrics port."""
        self.warm_up_scorer()
        self.simulator = start_simulator(self, self.stations, self.rate_hz, self.simulator_metrics_port, "load",
                                         extra=self.extra_env)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CITYSENSE_")}
        env.update({k: os.environ[k] for k in CHOSEN_SETTINGS if k in os.environ})
        env.update({
            "CITYSENSE_DATA_DIR": str(self.data_dir), "CITYSENSE_KAFKA_PORT": str(self.kafka_port),
            "CITYSENSE_API_PORT": str(self.api_port), "CITYSENSE_STATIONS": str(self.stations),
            "CITYSENSE_RATE_HZ": str(self.rate_hz), "CITYSENSE_COMPONENTS": self.launched_components,
            "CITYSENSE_SCENARIOS": json.dumps(self.scenarios),
            "CITYSENSE_SCORER_METRICS_PORT": str(self.scorer_metrics_port),
            "CITYSENSE_SIMULATOR_METRICS_PORT": str(self.simulator_metrics_port),
            "CITYSENSE_NOTIFIER_METRICS_PORT": str(self.notifier_metrics_port),
            "CITYSENSE_LOG_LEVEL": "INFO",  # the launcher then says why it stops; components log to files
        })
        env.update(self.extra_env)
        return env

    def start(self) -> StackRun:
        self.proc = subprocess.Popen([str(BIN / "citysense-stack"), "up"], env=self.env(), cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if "Ctrl-C stops everything" in line:
                self.state = json.loads((self.data_dir / "stack.json").read_text())
                threading.Thread(target=self._drain, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("the stack did not come up:\n" + "".join(self.output[-40:]))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            del self.output[:-200]

    def refresh_state(self) -> dict:
        try:
            self.state = json.loads((self.data_dir / "stack.json").read_text())
        except (OSError, ValueError):
            pass
        return self.state

    def pgids(self) -> set[int]:
        state = self.refresh_state()
        ids = {state.get("launcher"), state.get("broker"), state.get("cassandra"),
               *state.get("components", {}).values(), self.simulator.pid if self.simulator else None}
        return {int(i) for i in ids if i}

    def pids(self) -> list[int]:
        return group_members(self.pgids())

    def rss(self, measure: Callable[[int], int] = rss_bytes) -> dict[str, int]:
        """Memory by component (launcher, broker, scorer incl. JVM and Python workers, ...) and the total; VmRSS
        unless ``measure`` is :func:`pss_bytes`."""
        state = self.refresh_state()
        names = {state.get("launcher"): "launcher", state.get("broker"): "broker", state.get("cassandra"): "cassandra",
                 **{pid: name for name, pid in state.get("components", {}).items()}}
        groups, table = self.pgids(), _processes()
        out: dict[str, int] = {}
        for pid in table:
            group = _group_in(pid, groups, table)
            if group is None:
                continue
            name = names.get(group, "other")
            out[name] = out.get(name, 0) + measure(pid)
        out["total"] = sum(out.values())
        return out

    def cpu_seconds(self, component: str) -> float:
        """CPU time (user + system) of every live process in one component's group (JVM and workers included)."""
        pid = self.refresh_state().get("components", {}).get(component)
        return sum(cpu_seconds(p) for p in group_members([int(pid)])) if pid else 0.0

    def scorer_pid(self) -> int:
        return int(self.refresh_state()["components"]["scorer"])

    def scorer_processes(self) -> dict[str, list[int]]:
        """The scorer's live processes by part: its Spark JVM, its Python driver (the scorer's own process) and
        Spark's Python workers (their daemons included)."""
        driver = self.scorer_pid()
        parts: dict[str, list[int]] = {"jvm": [], "python_driver": [], "python_workers": []}
        for pid in group_members([driver]):
            part = ("python_driver" if pid == driver else "jvm" if "java" in cmdline(pid).split(" ")[0]
                    else "python_workers")
            parts[part].append(pid)
        return parts

    def log_errors(self, component: str, lines: int = 8) -> str:
        try:
            text = (self.data_dir / "logs" / f"{component}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        hits = [line for line in text.splitlines()
                if ("Error" in line or "Exception" in line or "exited" in line) and not line.lstrip().startswith("at ")]
        return "\n".join(hits[-lines:]) or "\n".join(text.splitlines()[-lines:])

    def wait_scorer_running(self, timeout: float = 420.0) -> None:
        """Until the scorer's metrics answer and its first micro-batch has run (the stack restarts a crashed one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            samples = scrape(self.scorer_metrics_port)
            if metric(samples, "citysense_scorer_batches_total") >= 1:
                return
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the stack launcher exited ({self.proc.returncode}) before the scorer's first "
                                   "micro-batch:\n" + "".join(self.output[-15:]))
            time.sleep(1)
        raise RuntimeError(f"the scorer ran no micro-batch in {timeout:.0f}s; its log says:\n"
                           + self.log_errors("scorer") + "\nlauncher:\n" + "".join(self.output[-10:]))

    def stop(self) -> None:
        if self.simulator is not None:
            stop_group(self.simulator)
            self.simulator = None
        if self.proc is None:
            return
        groups = self.pgids() | {self.proc.pid}
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                pass
        for pgid in groups:  # anything left behind (should be nothing)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if not self.keep_dir:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StackRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---- HTTP helpers -----------------------------------------------------------------------------------------------
def http_json(method: str, url: str, body: dict | None = None, token: str | None = None,
              timeout: float = 5.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310
        return json.loads(r.read() or b"{}")


# ---- probe producer ---------------------------------------------------------------------------------------------
def reading_bytes(station: str, seq: int, ts: datetime, pm25: float, lat: float = 52.52,
                  lon: float = 13.405) -> bytes:
    """A reading with every registry metric (plausible city values) and the given PM2.5."""
    from citysense_common.contract import format_ts

    doc = {"schema_version": 1, "station_id": station, "ts": format_ts(ts), "seq": seq,
           "location": {"lat": lat, "lon": lon},
           "metrics": {"temperature": 12.0, "humidity": 70.0, "pressure": 1013.0, "air_quality": 40.0,
                       "pm2_5": pm25, "pm10": max(pm25, 20.0), "noise_level": 58.0, "illuminance": 5000.0,
                       "wind_speed": 3.0, "rainfall": 0.0}}
    return json.dumps(doc, separators=(",", ":")).encode()


class ProbeProducer:
    """Sends readings for probe stations and remembers when each was handed to the producer."""

    def __init__(self, bootstrap: str, topic: str = "citysense.readings",
                 location: tuple[float, float] = (52.52, 13.405)) -> None:
        from confluent_kafka import Producer

        self.topic, self.location = topic, location
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "enable.idempotence": True,
                                  "acks": "all"})
        self.produced: dict[tuple[str, int], float] = {}  # (station, ts in ms) -> time.time() at produce
        self.seq: dict[str, int] = {}

    def send(self, station: str, pm25: float) -> int:
        """One reading stamped now (ms precision); returns its ts in ms."""
        now = time.time()
        ts_ms = int(now * 1000)
        seq = self.seq.get(station, 0)
        self.seq[station] = seq + 1
        value = reading_bytes(station, seq, datetime.fromtimestamp(ts_ms / 1000, tz=UTC), pm25,
                              *self.location)
        self.producer.produce(self.topic, key=station.encode(), value=value)
        self.producer.poll(0)
        self.produced[(station, ts_ms)] = now
        return ts_ms

    def flush(self, timeout: float = 10.0) -> int:
        return self.producer.flush(timeout)


def ts_ms_of(text: str) -> int:
    return int(round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def load_avg() -> float:
    return os.getloadavg()[0]


def run_note() -> str:
    """Free text about the run's conditions (CITYSENSE_BENCH_NOTE), e.g. that the machine was shared."""
    note = os.environ.get("CITYSENSE_BENCH_NOTE", "").strip()
    health = os.environ.get("CITYSENSE_HEALTH_ENABLED", "true (default)")
    chosen = "".join(f" {k}={os.environ[k]}." for k in CHOSEN_SETTINGS
                     if k in os.environ and k != "CITYSENSE_HEALTH_ENABLED")  # health is named above
    return f" Station health (CITYSENSE_HEALTH_ENABLED): {health}.{chosen}" + (f" Note: {note}" if note else "")
