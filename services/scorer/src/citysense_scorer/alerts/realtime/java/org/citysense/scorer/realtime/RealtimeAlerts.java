package org.citysense.scorer.realtime;

import org.apache.spark.api.java.function.MapFunction;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.TimeMode;

/** Entry point for PySpark (through the JVM gateway): readings in, alert events (key, value) out. */
public final class RealtimeAlerts {
  private RealtimeAlerts() {}

  /**
   * Applies the lifecycle of the spec's rules to a stream of parsed, valid readings (columns as {@link
   * AlertLifecycle} expects) and returns rows of (key = station_id, value = alert event JSON).
   */
  public static Dataset<Row> apply(Dataset<Row> readings, String specJson) {
    Spec.parse(specJson); // fail here, on the driver, with a clear message rather than in a task
    return readings
        .groupByKey((MapFunction<Row, String>) row -> row.getString(0), Encoders.STRING())
        .transformWithState(new AlertLifecycle(specJson), TimeMode.None(), OutputMode.Update(),
            Encoders.tuple(Encoders.STRING(), Encoders.STRING()))
        .toDF("key", "value");
  }
}
