"""A single-node Apache Cassandra 5.0 run from Maven Central jars, sized for a laptop and for tests.

Everything the node keeps (data, commit log, saved caches, hints, CDC) lives under ``data_dir`` and survives a
restart with the same folder. Both of its ports (CQL native and inter-node storage) are on 127.0.0.1 and chosen
free unless given, so several nodes, or a node and the tests, never collide; JMX stays off (``nodetool`` is not
needed by citysense). The node is ready when the CQL port answers a real query through cassandra-driver.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from citysense_common.jvm.components import CASSANDRA
from citysense_common.jvm.java import find_java_home
from citysense_common.jvm.maven import resolve

from citysense_localstack.procs import spawn, stop
from citysense_localstack.servers.net import free_port, port_in_use

Progress = Callable[[str], None]
HOST = "127.0.0.1"
DIRS = ("data", "commitlog", "saved_caches", "hints", "cdc_raw")

# The JPMS lines of Cassandra 5.0's conf/jvm17-server.options: Cassandra reaches into JDK internals (direct
# buffers, the attach API for jamm, RMI) and Java 17 refuses that unless each package is exported or opened.
JAVA17_EXPORTS = (
    "java.base/jdk.internal.misc", "java.management.rmi/com.sun.jmx.remote.internal.rmi", "java.rmi/sun.rmi.registry",
    "java.rmi/sun.rmi.server", "java.sql/java.sql", "java.base/java.lang.ref", "jdk.unsupported/sun.misc",
    "jdk.compiler/com.sun.tools.javac.file", "jdk.attach/sun.tools.attach",
)
JAVA17_OPENS = (
    "java.base/java.lang.module", "java.base/jdk.internal.loader", "java.base/jdk.internal.ref",
    "java.base/jdk.internal.reflect", "java.base/jdk.internal.math", "java.base/jdk.internal.module",
    "java.base/jdk.internal.util.jar", "jdk.management/com.sun.management.internal", "java.base/sun.nio.ch",
    "java.base/java.io", "java.base/java.lang.reflect", "jdk.compiler/com.sun.tools.javac", "java.base/java.lang",
    "java.base/java.util",
)

LOGBACK = """\
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
"""


class CassandraError(RuntimeError):
    """The local Cassandra node could not be started; the message names its log and its last errors."""


def cassandra_yaml(data_dir: Path, *, native_port: int, storage_port: int, cluster_name: str = "citysense") -> str:
    """``cassandra.yaml`` of one node on loopback with small caches, pools and memtables (JSON is valid YAML)."""
    dirs = {name: str(data_dir / name) for name in DIRS}
    config = {
        "cluster_name": cluster_name,
        "num_tokens": 1,  # one node owns the whole ring: one token is enough and keeps system tables tiny
        "initial_token": 0,
        "partitioner": "org.apache.cassandra.dht.Murmur3Partitioner",
        "endpoint_snitch": "SimpleSnitch",  # datacenter1 / rack1
        "seed_provider": [{"class_name": "org.apache.cassandra.locator.SimpleSeedProvider",
                           "parameters": [{"seeds": f"{HOST}:{storage_port}"}]}],
        "listen_address": HOST,
        "rpc_address": HOST,
        "storage_port": storage_port,
        "native_transport_port": native_port,
        "start_native_transport": True,
        "data_file_directories": [dirs["data"]],
        "commitlog_directory": dirs["commitlog"],
        "saved_caches_directory": dirs["saved_caches"],
        "hints_directory": dirs["hints"],
        "cdc_raw_directory": dirs["cdc_raw"],
        # Durable: a write is acknowledged once its commit log section is synced (writes arriving within the
        # window share one fsync), so even a SIGKILL loses nothing acknowledged. Upstream's default, periodic
        # sync every 10 s, acknowledges first: a killed node then forgets up to the last 10 s on restart.
        "commitlog_sync": "group",
        "commitlog_sync_group_window": "10ms",
        "commitlog_segment_size": "8MiB",
        "commitlog_total_space": "128MiB",
        "storage_compatibility_mode": "NONE",  # a new node, never upgraded from 4.x: 5.0 formats and features
        # Laptop-sized memory: small memtables, caches and pools (upstream sizes them from heap and cores).
        "memtable_heap_space": "64MiB",
        "memtable_offheap_space": "64MiB",
        "memtable_flush_writers": 1,
        "key_cache_size": "8MiB",
        "counter_cache_size": "0MiB",
        "row_cache_size": "0MiB",
        "file_cache_size": "32MiB",
        "networking_cache_size": "16MiB",
        "index_summary_capacity": "8MiB",
        "prepared_statements_cache_size": "4MiB",
        "concurrent_reads": 4,
        "concurrent_writes": 8,
        "concurrent_counter_writes": 2,
        "concurrent_materialized_view_writes": 2,
        "concurrent_compactors": 1,
        # What a single dev node does not need: hints (no other replica), snapshots on TRUNCATE and DROP (tests
        # truncate between cases), dynamic snitch scoring, CDC.
        "hinted_handoff_enabled": False,
        "auto_snapshot": False,
        "dynamic_snitch": False,
        "cdc_enabled": False,
        "authenticator": "AllowAllAuthenticator",
        "authorizer": "AllowAllAuthorizer",
        "disk_failure_policy": "stop",
        "commit_failure_policy": "stop",
    }
    return json.dumps(config, indent=2) + "\n"


def jvm_options(heap_mb: int, jamm: Path, data_dir: Path) -> list[str]:
    conf = data_dir / "conf"
    return [
        # A small initial heap: Cassandra mlockall()s what is mapped at start (where permitted, e.g. as root), so
        # -Xms is resident for the node's life.
        f"-Xms{min(64, heap_mb)}m", f"-Xmx{heap_mb}m", "-Xss256k", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=300",
        "-XX:+PerfDisableSharedMem", "-XX:+ExitOnOutOfMemoryError",
        # Startup is mostly class loading and interpreted code: the C1 compiler alone gets there sooner and is
        # plenty for a dev node's load.
        "-XX:TieredStopAtLevel=1",
        "-Djava.net.preferIPv4Stack=true", "-Djava.awt.headless=true",
        *(f"--add-exports={pkg}=ALL-UNNAMED" for pkg in JAVA17_EXPORTS),
        *(f"--add-opens={pkg}=ALL-UNNAMED" for pkg in JAVA17_OPENS),
        "-Djdk.attach.allowAttachSelf=true", f"-javaagent:{jamm}",
        "-Dio.netty.tryReflectionSetAccessible=true", "-Dio.netty.allocator.useCacheForAllThreads=true",
        "-Dio.netty.allocator.maxOrder=11",
        f"-Dcassandra.config=file://{conf / 'cassandra.yaml'}", "-Dcassandra-foreground=yes",
        f"-Dcassandra.storagedir={data_dir}", f"-Dcassandra.logdir={data_dir / 'logs'}",
        f"-Dlogback.configurationFile={conf / 'logback.xml'}",
        # One seed node: nothing to gossip with, so no waiting for gossip to settle or for a ring to form.
        "-Dcassandra.skip_wait_for_gossip_to_settle=0", "-Dcassandra.ring_delay_ms=100",
        "-Dcassandra.superuser_setup_delay_ms=0", "-Dcassandra.shutdown_announce_in_ms=0",
    ]


def class_archive_options(jars_home: Path, java_home: Path) -> tuple[list[str], tuple[Path, Path] | None]:
    """JVM options for a class-data-sharing archive of Cassandra's classes, and (dumped, final) when this run
    records it.

    Half of a start is loading and verifying some 10,000 classes. The first run records them at exit
    (``-XX:ArchiveClassesAtExit``, into a file of its own); later runs map the archive and start in about half the
    time. The archive belongs to one JDK and one classpath, so it lives beside the jars, named after the JDK; the
    JVM itself ignores an archive that does not match. jamm is a Java agent that transforms no classes, which CDS
    allows once told so.
    """
    jdk = hashlib.sha256(str(java_home.resolve()).encode()).hexdigest()[:10]
    archive = jars_home / f"cds-{jdk}.jsa"
    common = ["-XX:+UnlockDiagnosticVMOptions", "-XX:+AllowArchivingWithJavaAgent", "-Xlog:cds*=off"]
    if archive.exists():
        return [*common, f"-XX:SharedArchiveFile={archive}"], None
    partial = jars_home / f".cds-{jdk}-{os.getpid()}-{time.monotonic_ns()}.jsa"
    return [*common, f"-XX:ArchiveClassesAtExit={partial}"], (partial, archive)


@dataclass
class CassandraNode:
    data_dir: Path
    port: int  # CQL native transport
    storage_port: int
    proc: subprocess.Popen
    log_path: Path
    host: str = HOST
    version: str = CASSANDRA.version
    class_archive: tuple[Path, Path] | None = None  # (dumped at exit, kept as): see class_archive_options

    @property
    def contact_points(self) -> str:
        """CITYSENSE_CASSANDRA_HOSTS for this node (the port goes in CITYSENSE_CASSANDRA_PORT, see :attr:`env`)."""
        return self.host

    @property
    def env(self) -> dict[str, str]:
        """The settings that point the citysense store at this node."""
        return {"CITYSENSE_CASSANDRA_HOSTS": self.contact_points, "CITYSENSE_CASSANDRA_PORT": str(self.port)}

    @property
    def title(self) -> str:
        return f"{CASSANDRA.title} {self.version}"

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (Cassandra's shutdown hook drains and flushes), SIGKILL if it does not finish in time."""
        return self._keep_archive(stop(self.proc, timeout=timeout))

    def kill(self) -> int:
        """SIGKILL, as a crash would: the commit log replays on the next start."""
        return self._keep_archive(stop(self.proc, timeout=0))

    def _keep_archive(self, code: int) -> int:
        paths, self.class_archive = self.class_archive, None
        if paths is not None and paths[0].exists():
            partial, final = paths
            if code in (0, 143) and partial.stat().st_size > 0:  # a clean exit (SIGTERM is 143) wrote all of it
                os.replace(partial, final)
            else:
                partial.unlink()
        return code


def start_cassandra(data_dir: Path, *, port: int | None = None, storage_port: int | None = None,
                    log_path: Path | None = None, heap_mb: int = 768, timeout: float = 120,
                    java_home: Path | None = None, progress: Progress = print) -> CassandraNode:
    """Start a node with its state under ``data_dir``, on 127.0.0.1:``port`` (free if None); wait until it answers.

    The log goes to ``log_path`` (default ``data_dir/cassandra.log``). Raises :class:`CassandraError` naming the log
    and its last ERROR lines when the node exits or does not answer within ``timeout`` seconds.
    """
    data_dir = Path(data_dir).resolve()
    log_path = Path(log_path) if log_path else data_dir / "cassandra.log"
    port = port or free_port()
    storage_port = storage_port or free_port()  # a node may change it between runs: peers are found by seeds
    for what, number in (("CQL", port), ("storage", storage_port)):
        if port_in_use(number):
            raise CassandraError(f"{CASSANDRA.title}: {what} port {number} on {HOST} is already in use; choose another "
                                 f"port or use the Cassandra already running there")
    java_home = java_home or find_java_home()
    jars = resolve(CASSANDRA, java_home=java_home, progress=progress)
    for name in (*DIRS, "conf", "logs"):
        (data_dir / name).mkdir(parents=True, exist_ok=True)
    (data_dir / "conf" / "cassandra.yaml").write_text(
        cassandra_yaml(data_dir, native_port=port, storage_port=storage_port), encoding="utf-8")
    (data_dir / "conf" / "logback.xml").write_text(LOGBACK, encoding="utf-8")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    archive_options, class_archive = class_archive_options(jars.home, java_home)
    argv = [str(java_home / "bin" / "java"), *jvm_options(heap_mb, jars.jar("jamm-"), data_dir), *archive_options,
            "-cp", jars.classpath, CASSANDRA.main_class]
    with open(log_path, "a") as log:
        log.write(f"--- {CASSANDRA.title} {CASSANDRA.version}: CQL {HOST}:{port}, storage {storage_port}\n")
    proc = spawn(argv, env=dict(os.environ), log_path=str(log_path), cwd=str(data_dir))
    node = CassandraNode(data_dir, port, storage_port, proc, log_path, class_archive=class_archive)
    try:
        _wait_ready(node, timeout, progress)
    except BaseException:
        node.stop(timeout=10)
        raise
    return node


def _wait_ready(node: CassandraNode, timeout: float, progress: Progress) -> None:
    started = time.monotonic()
    deadline, next_note = started + timeout, started + 5
    while True:
        if node.proc.poll() is not None:
            raise CassandraError(f"{node.title} exited with code {node.proc.returncode} while starting"
                                 f"{log_tail(node.log_path)}")
        if port_in_use(node.port) and _answers(node):
            progress(f"{node.title} ready on {node.host}:{node.port} in {time.monotonic() - started:.1f} s "
                     f"(data in {node.data_dir})")
            return
        now = time.monotonic()
        if now > deadline:
            raise CassandraError(f"{node.title} did not answer on {node.host}:{node.port} within {timeout:.0f} s"
                                 f"{log_tail(node.log_path)}")
        if now >= next_note:
            progress(f"  ... waiting for {node.title} on {node.host}:{node.port} ({now - started:.0f} s)")
            next_note = now + 5
        time.sleep(0.25)


def _answers(node: CassandraNode) -> bool:
    """True when a real CQL query succeeds on the node's native port."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=5)
    cluster = Cluster([node.host], port=node.port, connect_timeout=5, control_connection_timeout=5,
                      execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    try:
        session = cluster.connect()
        return session.execute("SELECT release_version FROM system.local").one() is not None
    except Exception:  # noqa: BLE001 - any driver error means "not yet"
        return False
    finally:
        cluster.shutdown()


def log_tail(log_path: Path, lines: int = 5) -> str:
    """"; see <log>" and the log's last ERROR lines (with the exception line after each), for error messages."""
    path = Path(log_path)
    if not path.exists():
        return f"; no log at {path}"
    text = path.read_text(errors="replace").splitlines()
    picked: list[str] = []
    for i, line in enumerate(text):
        if line.startswith("ERROR") or " ERROR " in line:
            picked.append(line)
            if i + 1 < len(text) and not text[i + 1].startswith(("INFO", "WARN", "DEBUG", "ERROR")):
                picked.append(text[i + 1])
    # No ERROR line (e.g. the JVM refused its options): the last lines say why.
    picked = picked[-lines:] or [ln for ln in text if "Exception" in ln][-lines:] or text[-lines:]
    return f"; see {path}" + "".join(f"\n    {ln}" for ln in picked)


@contextlib.contextmanager
def running_cassandra(data_dir: Path, **kwargs: object) -> Iterator[CassandraNode]:
    node = start_cassandra(data_dir, **kwargs)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        node.stop()
