"""Scorer test fixtures: one small local SparkSession for the whole session (2 cores are shared)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from citysense_common.jvm.java import ensure_java
from citysense_common.registry import Registry, load_registry


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    ensure_java()
    from citysense_scorer.alerts.realtime.jar import scorer_jars
    from citysense_scorer.job.session import build_session
    from citysense_scorer.settings import ScorerSettings

    session = build_session("local[2]", shuffle_partitions=2, app_name="citysense-scorer-tests",
                            driver_memory=ScorerSettings.model_fields["scorer_driver_memory"].default,
                            jars=scorer_jars())
    yield session
    session.stop()


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()
