"""Resolve a JVM component from Maven Central into a local cache, once.

Maven does the resolution (transitive dependencies, checksums, its own local repository). With no ``mvn`` on the
machine, Apache Maven itself is fetched from Maven Central into the cache first and its SHA-512 checked - what the
Maven wrapper does - so a machine with only Java can run the stack. A resolved component is a folder of jars plus a
``classpath.txt`` naming them in order; nothing is fetched again while it exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tarfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from citysense_common.jvm.components import JvmComponent

MAVEN_VERSION = "3.9.11"
DEPENDENCY_PLUGIN = "3.8.1"
CENTRAL = "https://repo.maven.apache.org/maven2"

Progress = Callable[[str], None]


class ResolveError(RuntimeError):
    """A component could not be resolved; the message says what Maven reported and where its log is."""


def default_cache_dir() -> Path:
    """``$CITYSENSE_JVM_CACHE``, else ``$XDG_CACHE_HOME/citysense/jvm``, else ``~/.cache/citysense/jvm``."""
    explicit = os.environ.get("CITYSENSE_JVM_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "citysense" / "jvm"


@dataclass(frozen=True)
class Resolved:
    component: JvmComponent
    home: Path
    jars: tuple[Path, ...]

    @property
    def classpath(self) -> str:
        return os.pathsep.join(str(jar) for jar in self.jars)

    def jar(self, prefix: str) -> Path:
        """The one jar whose file name starts with ``prefix`` (e.g. ``jamm-``)."""
        found = [jar for jar in self.jars if jar.name.startswith(prefix)]
        if len(found) != 1:
            raise ResolveError(f"{self.component.title}: expected one {prefix}*.jar, found {len(found)}")
        return found[0]


def pom(component: JvmComponent) -> str:
    """A throwaway project whose runtime dependencies are the component's artifacts."""
    deps = []
    for coordinate in component.coordinates:
        group, artifact, version = coordinate.split(":")
        deps.append(f"    <dependency><groupId>{escape(group)}</groupId><artifactId>{escape(artifact)}</artifactId>"
                    f"<version>{escape(version)}</version></dependency>")
    exclusions = "".join(
        f"<exclusion><groupId>{escape(g)}</groupId><artifactId>{escape(a)}</artifactId></exclusion>"
        for g, a in (x.split(":") for x in component.exclusions))
    if exclusions:
        deps = [d.replace("</version></dependency>", f"</version><exclusions>{exclusions}</exclusions></dependency>")
                for d in deps]
    return "\n".join([
        '<project xmlns="http://maven.apache.org/POM/4.0.0">',
        "  <modelVersion>4.0.0</modelVersion>",
        f"  <groupId>citysense.jvm</groupId><artifactId>{escape(component.name)}</artifactId>",
        "  <version>1</version><packaging>pom</packaging>",
        "  <dependencies>", *deps, "  </dependencies>",
        "  <build><plugins><plugin><groupId>org.apache.maven.plugins</groupId>",
        f"    <artifactId>maven-dependency-plugin</artifactId><version>{DEPENDENCY_PLUGIN}</version>",
        "  </plugin></plugins></build>",
        "</project>", ""])


def component_home(component: JvmComponent, cache: Path) -> Path:
    digest = hashlib.sha256(pom(component).encode()).hexdigest()[:10]
    return cache / f"{component.name}-{component.version}-{digest}"


def cached(component: JvmComponent, cache: Path) -> Resolved | None:
    home = component_home(component, cache)
    listing = home / "classpath.txt"
    if not listing.exists():
        return None
    jars = tuple(home / "lib" / name for name in listing.read_text(encoding="utf-8").split())
    if not jars or not all(jar.exists() for jar in jars):
        return None
    return Resolved(component, home, jars)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def resolve(component: JvmComponent, cache: Path | None = None, *, java_home: Path | None = None,
            progress: Progress = print) -> Resolved:
    """The component's jars, fetched with Maven on first use. Safe to call from several processes at once."""
    cache = cache or default_cache_dir()
    found = cached(component, cache)
    if found:
        return found
    home = component_home(component, cache)
    with _locked(cache / f".{home.name}.lock"):
        found = cached(component, cache)  # another process finished while this one waited
        if found:
            return found
        mvn = find_maven(cache, java_home=java_home, progress=progress)
        return _fetch(component, home, mvn, java_home, progress)


def _fetch(component: JvmComponent, home: Path, mvn: Path, java_home: Path | None, progress: Progress) -> Resolved:
    home.mkdir(parents=True, exist_ok=True)
    (home / "pom.xml").write_text(pom(component), encoding="utf-8")
    staging = home / "lib.partial"
    shutil.rmtree(staging, ignore_errors=True)
    log_path = home / "maven.log"
    progress(f"fetching {component.title} {component.version} from Maven Central into {home} (first run only)")
    argv = [str(mvn), "-B", "-ntp", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
    env = dict(os.environ)
    if java_home:
        env["JAVA_HOME"] = str(java_home)
    started = time.monotonic()
    with open(log_path, "w") as log, _ticker(progress, component, staging, started):
        code = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if code != 0:
        raise ResolveError(f"Maven could not resolve {component.title} {component.version} "
                           f"({', '.join(component.coordinates)}): {_last_error(log_path)}; full log: {log_path}")
    jars = sorted(p.name for p in staging.glob("*.jar"))
    lib = home / "lib"
    shutil.rmtree(lib, ignore_errors=True)
    staging.rename(lib)
    (home / "classpath.txt").write_text("\n".join(jars) + "\n", encoding="utf-8")
    size = sum((lib / name).stat().st_size for name in jars)
    progress(f"{component.title} {component.version}: {len(jars)} jars, {size / 2**20:.0f} MiB "
             f"in {time.monotonic() - started:.0f} s")
    return Resolved(component, home, tuple(lib / name for name in jars))


@contextlib.contextmanager
def _ticker(progress: Progress, component: JvmComponent, staging: Path, started: float,
            every_s: float = 5.0) -> Iterator[None]:
    """A status line every few seconds while Maven works, so a first run never looks hung."""
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every_s):
            count = len(list(staging.glob("*.jar"))) if staging.exists() else 0
            what = f"{count} jars copied" if count else "resolving dependencies"
            progress(f"  ... {component.title}: {what} ({time.monotonic() - started:.0f} s)")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _last_error(log_path: Path) -> str:
    lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if "[ERROR]" in ln]
    return lines[0].removeprefix("[ERROR]").strip() if lines else "no [ERROR] line"


# ---- Maven itself ---------------------------------------------------------------------------------------------

def find_maven(cache: Path, *, java_home: Path | None = None, progress: Progress = print) -> Path:
    """``$CITYSENSE_MVN``, else ``mvn`` on PATH, else Apache Maven fetched from Maven Central into the cache."""
    explicit = os.environ.get("CITYSENSE_MVN")
    if explicit:
        return Path(explicit)
    on_path = shutil.which("mvn")
    if on_path:
        return Path(on_path)
    return bootstrap_maven(cache, progress=progress)


def bootstrap_maven(cache: Path, version: str = MAVEN_VERSION, repo: str = CENTRAL,
                    progress: Progress = print) -> Path:
    """Download and unpack Apache Maven ``version`` (checked against its published SHA-512); return bin/mvn."""
    target = cache / "maven" / f"apache-maven-{version}"
    mvn = target / "bin" / "mvn"
    if mvn.exists():
        return mvn
    url = f"{repo}/org/apache/maven/apache-maven/{version}/apache-maven-{version}-bin.tar.gz"
    progress(f"no mvn on this machine: fetching Apache Maven {version} from {url}")
    with urllib.request.urlopen(url + ".sha512", timeout=60) as response:  # noqa: S310 - fixed https URL
        expected = response.read().decode().split()[0].strip().lower()
    archive = cache / "maven" / f"apache-maven-{version}-bin.tar.gz"
    archive.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha512()
    with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:  # noqa: S310
        while chunk := response.read(1 << 16):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected:
        archive.unlink()
        raise ResolveError(f"Apache Maven {version}: SHA-512 mismatch for {url}")
    with tarfile.open(archive) as tar:
        tar.extractall(cache / "maven", filter="data")
    archive.unlink()
    if not mvn.exists():
        raise ResolveError(f"Apache Maven {version} unpacked without bin/mvn under {target}")
    return mvn
