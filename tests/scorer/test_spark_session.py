"""The scorer's SparkSession (citysense_scorer.spark.build_session): settings a log reader or operator relies on."""

from __future__ import annotations


def test_no_console_progress_bar_in_the_log(spark) -> None:  # noqa: ANN001
    # Spark redraws a progress bar per stage on stderr, which is the scorer's log file under `make up`.
    assert spark.sparkContext.getConf().get("spark.ui.showConsoleProgress") == "false"
    assert spark.sparkContext.getConf().get("spark.ui.enabled") == "false"
