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

# Spark's Kafka source and sink, for the scorer. Maven Central serves them up to 4.2.0, not at the pinned pyspark
# 4.3.0; the 4.2.0 connector runs on Spark 4.3.0 (the scorer's tests use it in both trigger modes). Everything the
# pyspark jars already hold is left out, so only the connector and its Kafka client join Spark's classpath.
SPARK_KAFKA = JvmComponent(
    name="spark-kafka",
    title="Spark's Kafka connector",
    version="4.2.0",
    coordinates=("org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0",),
    exclusions=("org.apache.hadoop:hadoop-client-api", "org.apache.hadoop:hadoop-client-runtime",
                "org.scala-lang:scala-library", "org.scala-lang.modules:scala-parallel-collections_2.13",
                "org.apache.spark:spark-tags_2.13", "com.google.code.findbugs:jsr305", "org.slf4j:slf4j-api",
                "org.lz4:lz4-java", "at.yawk.lz4:lz4-java", "org.xerial.snappy:snappy-java"),
)

# The Eclipse compiler for Java: builds the scorer's real-time classes against pyspark's jars on a plain JRE.
ECJ = JvmComponent(
    name="ecj",
    title="Eclipse compiler for Java",
    version="3.46.100",
    coordinates=("org.eclipse.jdt:ecj:3.46.100",),
)

COMPONENTS = {c.name: c for c in (KAFKA, CASSANDRA, SPARK_KAFKA, ECJ)}
