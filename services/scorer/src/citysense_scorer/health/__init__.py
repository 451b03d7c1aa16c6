"""Station health: pure detectors (baselines, faults, offline, forecasts), per-bucket state, Spark operator."""
