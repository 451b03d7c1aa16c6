"""Reading Kafka into Spark: the Kafka source, and decoding and validating each message into a typed row."""
