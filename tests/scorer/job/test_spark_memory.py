"""The scorer's Spark processes give memory back after a micro-batch (citysense_scorer.job.session.lean_memory)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from citysense_common.settings import SettingsError
from citysense_scorer.job.session import JVM_MEMORY_OPTIONS, LEAN_MEMORY_ENV, lean_memory
from citysense_scorer.settings import ScorerSettings, scorer_settings


def test_driver_jvm_runs_with_the_heap_shrinking_options_and_the_configured_heap(spark) -> None:  # noqa: ANN001
    jvm = spark.sparkContext._jvm
    args = list(jvm.java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments())
    for option in JVM_MEMORY_OPTIONS.split():
        assert option in args
    assert f"-Xmx{ScorerSettings.model_fields['scorer_driver_memory'].default}" in args


@pytest.mark.parametrize("value", ["768m", "2g", "512M"])
def test_driver_memory_accepts_jvm_sizes(value: str) -> None:
    assert scorer_settings(scorer_driver_memory=value).scorer_driver_memory == value


@pytest.mark.parametrize("value", ["1 GB", "0m", "768", "lots"])
def test_driver_memory_refuses_what_the_jvm_would_not_take(value: str) -> None:
    with pytest.raises(SettingsError, match="CITYSENSE_SCORER_DRIVER_MEMORY.*768m or 2g"):
        scorer_settings(scorer_driver_memory=value)


def test_python_workers_inherit_the_allocator_settings(spark) -> None:  # noqa: ANN001
    def probe(batches):  # runs in a PySpark worker process
        import os

        import pandas as pd
        import pyarrow

        for _ in batches:
            yield pd.DataFrame({"name": [*LEAN_MEMORY_ENV, "pool"],
                                "value": [*(os.environ.get(k) for k in LEAN_MEMORY_ENV),
                                          pyarrow.default_memory_pool().backend_name]})

    rows = spark.range(1).mapInPandas(probe, "name string, value string").collect()
    seen = {r["name"]: r["value"] for r in rows}
    assert seen == {**LEAN_MEMORY_ENV, "pool": "system"}


def test_settings_already_in_the_environment_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "262144")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    lean_memory()
    import os

    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "262144"
    assert os.environ["MALLOC_MMAP_THRESHOLD_"] == LEAN_MEMORY_ENV["MALLOC_MMAP_THRESHOLD_"]
    assert pa.default_memory_pool().backend_name == "system"
