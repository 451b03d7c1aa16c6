"""Fill docker/scorer/jvm/ (never committed) for the scorer image: Spark's Kafka connector and the real-time alert
classes, as the JVM cache the scorer reads at start (``CITYSENSE_JVM_CACHE``).

A pod has no business reaching Maven Central, and the image build has no network: the jars are resolved and
compiled on the host by the scorer's own code (``citysense_scorer.alerts.realtime.jar.scorer_jars``, cached under
the host's JVM cache) and copied in the cache's own layout, so the scorer in the image finds them where it looks and
neither fetches nor compiles anything. The real-time jar's name carries a hash of its Java sources and of pyspark's
jar names: an image whose sources or pyspark differ from the host's would not find it, and says so at start.

Usage: .venv/bin/python docker/scorer/prepare.py   (docker/e2e-containers.sh runs it before building)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from citysense_common.jvm import components, maven
from citysense_scorer.alerts.realtime.jar import build_jar

TARGET = Path(__file__).resolve().parent / "jvm"


def main() -> int:
    say = lambda msg: print(msg, file=sys.stderr)  # noqa: E731
    connector = maven.resolve(components.SPARK_KAFKA, progress=say)
    realtime = build_jar(progress=say)
    wanted = {connector.home: TARGET / connector.home.name, realtime.parent: TARGET / realtime.parent.name}
    for stale in TARGET.iterdir() if TARGET.exists() else ():
        if stale.is_dir() and stale not in wanted.values():
            shutil.rmtree(stale)
    for source, target in wanted.items():
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if source == connector.home:
            shutil.copy2(source / "classpath.txt", target / "classpath.txt")
            shutil.copytree(source / "lib", target / "lib")
        else:
            shutil.copy2(realtime, target / realtime.name)
    size = sum(p.stat().st_size for p in TARGET.rglob("*.jar"))
    print(f"==> scorer JVM cache: {components.SPARK_KAFKA.title} {components.SPARK_KAFKA.version} "
          f"({len(connector.jars)} jars) and {realtime.name}, {size / 2**20:.0f} MiB in {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
