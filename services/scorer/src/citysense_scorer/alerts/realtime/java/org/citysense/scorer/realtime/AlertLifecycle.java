package org.citysense.scorer.realtime;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import org.apache.spark.sql.Encoders;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.streaming.OutputMode;
import org.apache.spark.sql.streaming.StatefulProcessor;
import org.apache.spark.sql.streaming.TTLConfig;
import org.apache.spark.sql.streaming.TimeMode;
import org.apache.spark.sql.streaming.TimerValues;
import org.apache.spark.sql.streaming.ValueState;
import scala.Tuple2;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The alert lifecycle of the real-time rules, per station: window series, `for`, hysteresis, cooldown, one open
 * alert per station and rule. It runs inside Spark's transformWithState, keyed by station, so it sees each
 * station's readings in Kafka order (a station's readings share one partition) and its state is checkpointed with
 * the offsets: after a restart or a replay the same readings give the same events, with the same ids. Nothing here
 * reads a wall clock; times are the readings' event times.
 *
 * <p>Input columns: station_id, ts_ms (event time), clock_ms (the broker's append time), lat, lon (nullable), values
 * (one nullable value per metric of the spec). Output: (station_id, alert event JSON of contract v1).
 */
final class AlertLifecycle extends StatefulProcessor<String, Row, Tuple2<String, String>> {
  private static final long serialVersionUID = 1L;
  private static final DateTimeFormatter TS =
      DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'").withZone(ZoneOffset.UTC);

  private final String specJson;
  private transient Spec spec;
  private transient ValueState<byte[]> stored;

  AlertLifecycle(String specJson) {
    this.specJson = specJson;
  }

  @Override
  public void init(OutputMode outputMode, TimeMode timeMode) {
    spec = Spec.parse(specJson);
    stored = getHandle().getValueState("station", Encoders.BINARY(), TTLConfig.NONE());
  }

  @Override
  public scala.collection.Iterator<Tuple2<String, String>> handleInputRows(
      String station, scala.collection.Iterator<Row> rows, TimerValues timerValues) {
    StationState state = stored.exists() ? StationState.fromBytes(spec, stored.get()) : new StationState(spec);
    List<Tuple2<String, String>> out = new ArrayList<>(0);
    boolean changed = false;
    while (rows.hasNext()) {
      changed |= observe(station, state, rows.next(), out);
    }
    if (changed) {
      stored.update(state.toBytes());
    }
    return CollectionConverters.asScala(out.iterator());
  }

  private boolean observe(String station, StationState st, Row row, List<Tuple2<String, String>> out) {
    long ts = row.getLong(1);
    long bounded = Math.min(ts, row.getLong(2));
    // Late: behind this station's own watermark. Per station, so no other station's clock can make it late.
    if (st.maxBoundedMs != Long.MIN_VALUE && ts < st.maxBoundedMs - spec.watermarkMs) {
      return false;
    }
    st.maxBoundedMs = Math.max(st.maxBoundedMs, bounded);
    if (ts >= st.seenMs) {
      st.seenMs = ts;
      if (!row.isNullAt(3) && !row.isNullAt(4)) {
        st.lat = row.getDouble(3);
        st.lon = row.getDouble(4);
      }
    }
    List<Object> values = row.getList(5);
    for (int s = 0; s < st.series.length; s++) {
      Object v = values.get(spec.seriesMetric[s]);
      if (v == null) {
        continue;
      }
      WindowSeries series = st.series[s];
      series.add(ts, ((Number) v).doubleValue());
      for (int r = 0; r < spec.rules.length; r++) {
        RuleSpec rule = spec.rules[r];
        if (rule.series != s) {
          continue;
        }
        double value = series.aggregate(rule.aggregation);
        if (Double.isNaN(value) || (!rule.partial && !series.complete(rule.windowMs))) {
          continue;
        }
        transition(station, st, r, rule, value, series.lastMs, ts, out);
      }
    }
    return true;
  }

  private void transition(String station, StationState st, int r, RuleSpec rule, double value, long now,
      long since, List<Tuple2<String, String>> out) {
    Slot slot = st.slots[r];
    int band = rule.bandOf(value);
    if (slot.alertId == null) {
      if (band < 0) {
        slot.pendingSince = Slot.NONE;
        return;
      }
      if (slot.pendingSince == Slot.NONE) {
        slot.pendingSince = since;
      }
      if (now - slot.pendingSince < rule.forMs || now < slot.cooldownUntil) {
        return;
      }
      slot.alertId = Uuid5.of(spec.namespace, station + "|" + rule.id + "|" + now);
      slot.openedMs = now;
      slot.band = band;
      slot.events = 0;
      slot.pendingSince = Slot.NONE;
      out.add(event(station, st, slot, rule, "open", value, now));
      return;
    }
    if (value <= rule.clear) {
      out.add(event(station, st, slot, rule, "resolved", value, now));
      slot.reset(now + rule.cooldownMs);
      return;
    }
    band = Math.max(band, 0); // between clear and the lowest band: hysteresis keeps the lowest band
    if (band != slot.band) {
      slot.band = band;
      out.add(event(station, st, slot, rule, "update", value, now));
    }
  }

  private Tuple2<String, String> event(String station, StationState st, Slot slot, RuleSpec rule, String state,
      double value, long now) {
    slot.events += 1;
    int band = Math.max(slot.band, 0);
    String what = rule.what + " " + decimal(value, 1) + " " + rule.unit;
    String message = "resolved".equals(state)
        ? what + " is back to " + rule.clearText + " " + rule.unit + " or below; alert resolved"
        : what + " exceeds " + rule.thresholdTexts[band] + " " + rule.unit + " (" + rule.standard + ": "
            + rule.labels[band] + ")";
    StringBuilder json = new StringBuilder(512);
    json.append("{\"schema_version\":1");
    field(json, "event_id", Uuid5.of(spec.namespace, slot.alertId + "|" + slot.events + "|" + state));
    field(json, "alert_id", slot.alertId);
    field(json, "state", state);
    field(json, "kind", "threshold");
    field(json, "severity", rule.severities[band]);
    field(json, "rule_id", rule.id);
    field(json, "station_id", station);
    if (Double.isNaN(st.lat)) {
      json.append(",\"location\":null");
    } else {
      json.append(",\"location\":{\"lat\":").append(st.lat).append(",\"lon\":").append(st.lon).append('}');
    }
    field(json, "metric", rule.metric);
    json.append(",\"value\":");
    json.append(Double.isFinite(value) ? decimal(value, 3) : "null");
    json.append(",\"threshold\":").append(rule.thresholds[band]);
    field(json, "window", rule.window);
    field(json, "opened_at", TS.format(Instant.ofEpochMilli(slot.openedMs)));
    field(json, "event_time", TS.format(Instant.ofEpochMilli(now)));
    if ("resolved".equals(state)) {
      field(json, "resolved_at", TS.format(Instant.ofEpochMilli(now)));
    } else {
      json.append(",\"resolved_at\":null");
    }
    field(json, "message", message);
    json.append('}');
    return new Tuple2<>(station, json.toString());
  }

  /** Rounded half-even on the exact binary value, as Python's round() and format() do. */
  static String decimal(double value, int places) {
    return new BigDecimal(value).setScale(places, RoundingMode.HALF_EVEN).toPlainString();
  }

  private static void field(StringBuilder json, String name, String value) {
    json.append(",\"").append(name).append("\":\"");
    for (int i = 0; i < value.length(); i++) {
      char c = value.charAt(i);
      switch (c) {
        case '"' -> json.append("\\\"");
        case '\\' -> json.append("\\\\");
        default -> {
          if (c < 0x20) {
            json.append(String.format("\\u%04x", (int) c));
          } else {
            json.append(c);
          }
        }
      }
    }
    json.append('"');
  }
}
