"""The micro-batch sink: alert engine, store writes, alert events and dead letters, overlapped with Spark."""
