"""citysense scorer: validates, scores and stores readings and raises alerts (Spark Structured Streaming).

Where things are, in the order a reading passes through them:

- ``cli``: the entry point (``citysense-scorer stream`` / ``batch``): the one place that reads the environment;
  it builds the settings, the metric registry and the rules once and passes them down.
- ``job/``: the streaming job: Spark session, the query (source -> health -> sink), the consumer-lag gauge.
- ``source/``: Kafka into Spark: the Kafka data source, decoding and validating each message, the reference validator.
- ``health/``: station health: pure detectors (baselines, faults, offline, forecasts), the per-bucket state and the
  Spark operator that keeps it, and the checkpoint check for the health setting.
- ``sink/``: the micro-batch sink: scores, alert engine, store writes, alert events and dead letters, run overlapped
  with Spark.
- ``alerts/``: threshold rules, registry scores (z, outliers, heat index), the alert engine with its windowed series
  and its durable log.
- ``batch/``: the daily batch: aggregates per station and day, year-to-date exceedance days.
- ``settings``, ``metrics``, ``worker_gc``: the scorer's settings, its Prometheus metrics, and garbage collection in
  the Python workers Spark reuses; shared by the packages above.
"""
