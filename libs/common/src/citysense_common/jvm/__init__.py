"""The JVM side of citysense: finding Java, and resolving Kafka and Cassandra from Maven Central."""
