"""The streaming job: the Spark session, the query from source through health to the sink, and its lag gauge."""
