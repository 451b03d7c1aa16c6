"""The scorer's SparkSession (citysense_scorer.job.session.build_session): settings a log reader or operator needs."""

from __future__ import annotations


def test_no_console_progress_bar_in_the_log(spark) -> None:  # noqa: ANN001
    # Spark redraws a progress bar per stage on stderr, which is the scorer's log file under `make up`.
    assert spark.sparkContext.getConf().get("spark.ui.showConsoleProgress") == "false"
    assert spark.sparkContext.getConf().get("spark.ui.enabled") == "false"


def test_the_falling_behind_warning_stays_out_of_the_log(spark) -> None:  # noqa: ANN001
    # one WARN per micro-batch under load; the batch duration and lag metrics say the same
    from citysense_scorer.job.session import QUIET_JVM_LOGGERS

    jvm = spark.sparkContext._jvm
    [name] = QUIET_JVM_LOGGERS
    logger = jvm.org.apache.logging.log4j.LogManager.getLogger(name)
    assert not logger.isWarnEnabled() and logger.isErrorEnabled()
    other = jvm.org.apache.logging.log4j.LogManager.getLogger("org.apache.spark.sql.execution.streaming.runtime.X")
    assert other.isWarnEnabled()  # the rest of Spark still warns
    assert jvm.java.lang.Class.forName(name) is not None  # the class exists under that name in this Spark


def test_the_real_time_shuffle_sends_partly_filled_buffers_promptly(spark) -> None:  # noqa: ANN001
    # Spark ignores an unknown key without a word: the key must be the one this Spark reads for the pipelined
    # shuffle's flush, and it must carry the scorer's default, not Spark's 50 ms.
    from citysense_scorer.job.session import SHUFFLE_FLUSH_CONF
    from citysense_scorer.settings import ScorerSettings

    jvm = spark.sparkContext._jvm
    config = jvm.java.lang.Class.forName("org.apache.spark.internal.config.package$").getField("MODULE$").get(None)
    entry = config.STREAMING_SHUFFLE_NETWORK_BUFFER_MAX_WAIT_TIME_MS()
    assert entry.key() == SHUFFLE_FLUSH_CONF
    assert entry.defaultValueString() == "50"
    default = ScorerSettings.model_fields["scorer_realtime_shuffle_flush_ms"].default
    assert spark.sparkContext.getConf().get(SHUFFLE_FLUSH_CONF) == str(default)
    assert default < 50
