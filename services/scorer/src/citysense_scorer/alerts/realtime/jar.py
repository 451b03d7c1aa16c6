"""Build the real-time path's JVM classes (``java/``) into a jar, once per source and Spark version.

The Eclipse compiler for Java (a plain jar from Maven Central, resolved like Kafka's jars) compiles them against the
jars of the installed pyspark, so a Java runtime is enough (no JDK) and the classes always match the Spark that runs
them. The jar is cached under the JVM cache, named by a hash of the sources and the Spark jars' names.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from citysense_common.jvm.components import ECJ, SPARK_KAFKA
from citysense_common.jvm.java import find_java_home
from citysense_common.jvm.maven import default_cache_dir, resolve

SOURCES = Path(__file__).parent / "java"


class BuildError(RuntimeError):
    """The Java sources did not compile; the message carries the compiler's output."""


def spark_jars() -> list[Path]:
    import pyspark

    return sorted((Path(pyspark.__file__).parent / "jars").glob("*.jar"))


def build_jar(cache: Path | None = None, progress: Callable[[str], None] = print) -> Path:
    sources = sorted(SOURCES.rglob("*.java"))
    classpath = spark_jars()
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.relative_to(SOURCES).as_posix().encode() + b"\0" + source.read_bytes())
    digest.update("\n".join(j.name for j in classpath).encode())
    target = (cache or default_cache_dir()) / "scorer-realtime" / f"realtime-{digest.hexdigest()[:16]}.jar"
    if target.exists():
        return target
    if not os.access(target.parent if target.parent.exists() else target.parent.parent, os.W_OK):
        raise BuildError(f"{target.name} is not in the read-only JVM cache {target.parent.parent}: an image must "
                         "carry the real-time classes of its own sources (docker/scorer/prepare.py before the build)")
    java_home = find_java_home()
    compiler = resolve(ECJ, cache, java_home=java_home, progress=progress).jar("ecj")
    java = str(java_home / "bin" / "java")
    progress(f"compiling the real-time alert classes ({len(sources)} Java files)")
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes"
        result = subprocess.run(
            [java, "-jar", str(compiler), "-17", "-nowarn", "-encoding", "UTF-8",
             "-cp", os.pathsep.join(map(str, classpath)), "-d", str(classes), *map(str, sources)],
            capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BuildError(f"the real-time alert classes do not compile:\n{result.stdout}{result.stderr}")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as jar:
            for item in sorted(classes.rglob("*.class")):
                jar.write(item, item.relative_to(classes).as_posix())
        partial.replace(target)
    return target


def scorer_jars(cache: Path | None = None, progress: Callable[[str], None] = print) -> list[Path]:
    """What the scorer adds to Spark's classpath: Spark's Kafka connector and the real-time alert classes."""
    return [*resolve(SPARK_KAFKA, cache, progress=progress).jars, build_jar(cache, progress)]
