"""Real servers the local stack and the tests run: Apache Kafka and Apache Cassandra from Maven Central jars."""
