"""The real-time alert path: a Spark Real-Time Mode query that runs the short-window threshold rules.

Readings are read by Spark's Kafka source, parsed and checked in the JVM (:mod:`citysense_scorer.source.columns`),
and go through a JVM ``transformWithState`` keyed by station (the Java sources under ``java/``, built by :mod:`.jar`)
that keeps each rule's window and lifecycle and writes alert events straight to the alerts topic. Which rules run
here, and the words of their messages, come from ``config/rules.yaml`` (:mod:`.spec`). The remaining rules, outliers,
station health and storage stay in the micro-batch query.
"""
