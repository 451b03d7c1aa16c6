"""Fill docker/broker/build/ (never committed) for the broker image: Apache Kafka's jars and its configuration.

The jars are the ones the local stack runs, resolved from Maven Central by
``citysense_common.jvm.maven.resolve(components.KAFKA)`` (cached on the host). The configuration is rendered by the
local launcher's own functions (citysense_localstack.servers.kafka: ``server_properties``, ``LOG4J2``,
``jvm_options``), so the container and ``make up`` run the same broker settings; the addresses are placeholders
(``@HOST@``, ``@PORT@`` ...) that the image's entry script fills in at start.

Usage: .venv/bin/python docker/broker/prepare.py   (docker/e2e-containers.sh runs it before building)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from citysense_common.jvm import components, maven
from citysense_localstack.servers.kafka import LOG4J2, jvm_options, server_properties

BUILD = Path(__file__).resolve().parent / "build"
LOG_DIR = "/var/lib/kafka/data"  # the image's volume (docker/broker/Dockerfile)
HEAP_MB = 512  # as the local launcher's default; KAFKA_OPTS=-Xmx... at run time overrides it


def main() -> int:
    resolved = maven.resolve(components.KAFKA, progress=lambda msg: print(msg, file=sys.stderr))
    jars = sorted((Path(resolved.home) / "lib").glob("*.jar"))
    if not any(j.name.startswith("kafka_") for j in jars):
        raise SystemExit(f"no Kafka server jar in {resolved.home}/lib")
    lib = BUILD / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    wanted = {j.name for j in jars}
    for stale in lib.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for jar in jars:
        target = lib / jar.name
        if not target.exists() or target.stat().st_size != jar.stat().st_size:
            shutil.copy2(jar, target)
    config = server_properties(log_dir=LOG_DIR, port="@PORT@", controller_port="@CONTROLLER_PORT@",  # type: ignore[arg-type]
                               host="@HOST@", advertised_host="@ADVERTISED_HOST@")
    files = {"server.properties.in": config, "log4j2.properties": LOG4J2,
             "jvm.options": "\n".join(jvm_options(HEAP_MB)) + "\n",
             "VERSION": f"{components.KAFKA.version}\n"}
    for name, text in files.items():
        path = BUILD / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")  # rewritten only on change: the build cache keeps its layers
    print(f"==> broker build context: {components.KAFKA.title} {components.KAFKA.version}, {len(jars)} jars "
          f"({sum(j.stat().st_size for j in jars) / 2**20:.0f} MiB) in {BUILD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
