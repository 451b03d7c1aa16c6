"""The JVM systems citysense runs, as Maven Central coordinates (docs/components.md lists them; a test keeps the
two in step).

Versions: the newest 4.x Kafka and 5.0.x Cassandra that resolve from Maven Central; Cassandra 4.1 runs only on Java
8/11, 5.0 on 17. Kafka 4 logs through SLF4J 1.x, so the log4j2 binding for it comes along.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JvmComponent:
    name: str  # cache folder and log name
    title: str
    version: str
    coordinates: tuple[str, ...]  # group:artifact:version, resolved with their runtime dependencies
    main_class: str = ""
    exclusions: tuple[str, ...] = ()  # group:artifact left out of every coordinate's dependencies


KAFKA = JvmComponent(
    name="kafka",
    title="Apache Kafka",
    version="4.4.0",
    coordinates=("org.apache.kafka:kafka_2.13:4.4.0", "org.apache.logging.log4j:log4j-slf4j-impl:2.25.5"),
    main_class="kafka.Kafka",
)

CASSANDRA = JvmComponent(
    name="cassandra",
    title="Apache Cassandra",
    version="5.0.9",
    coordinates=("org.apache.cassandra:cassandra-all:5.0.9",),
    main_class="org.apache.cassandra.service.CassandraDaemon",
)

COMPONENTS = {c.name: c for c in (KAFKA, CASSANDRA)}
