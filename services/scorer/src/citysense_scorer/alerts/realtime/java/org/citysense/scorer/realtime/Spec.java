package org.citysense.scorer.realtime;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.Serializable;
import java.util.UUID;

/** What the real-time path evaluates: the metrics it reads, their window series and the rules over them. */
final class Spec implements Serializable {
  private static final long serialVersionUID = 1L;

  final UUID namespace;
  final String fingerprint; // changes with the series and rules: state written for others starts afresh
  final long watermarkMs;
  final String[] metrics; // input column "values" holds one value per metric, in this order
  final int[] seriesMetric; // series -> metric index
  final long[] seriesWindowMs;
  final RuleSpec[] rules;

  private Spec(UUID namespace, String fingerprint, long watermarkMs, String[] metrics, int[] seriesMetric, long[] seriesWindowMs,
      RuleSpec[] rules) {
    this.namespace = namespace;
    this.fingerprint = fingerprint;
    this.watermarkMs = watermarkMs;
    this.metrics = metrics;
    this.seriesMetric = seriesMetric;
    this.seriesWindowMs = seriesWindowMs;
    this.rules = rules;
  }

  static Spec parse(String json) {
    JsonNode doc;
    try {
      doc = new ObjectMapper().readTree(json);
    } catch (IOException e) {
      throw new IllegalArgumentException("real-time rule spec is not JSON: " + e.getMessage(), e);
    }
    JsonNode metricNodes = doc.get("metrics");
    String[] metrics = new String[metricNodes.size()];
    for (int i = 0; i < metrics.length; i++) {
      metrics[i] = metricNodes.get(i).asText();
    }
    JsonNode seriesNodes = doc.get("series");
    int[] seriesMetric = new int[seriesNodes.size()];
    long[] seriesWindow = new long[seriesNodes.size()];
    for (int i = 0; i < seriesMetric.length; i++) {
      seriesMetric[i] = seriesNodes.get(i).get("metric").asInt();
      seriesWindow[i] = seriesNodes.get(i).get("window_ms").asLong();
    }
    JsonNode ruleNodes = doc.get("rules");
    RuleSpec[] rules = new RuleSpec[ruleNodes.size()];
    for (int i = 0; i < rules.length; i++) {
      JsonNode r = ruleNodes.get(i);
      JsonNode bands = r.get("bands");
      int n = bands.size();
      double[] thresholds = new double[n];
      String[] severities = new String[n];
      String[] texts = new String[n];
      String[] labels = new String[n];
      for (int b = 0; b < n; b++) {
        thresholds[b] = bands.get(b).get("threshold").asDouble();
        severities[b] = bands.get(b).get("severity").asText();
        texts[b] = bands.get(b).get("threshold_text").asText();
        labels[b] = bands.get(b).get("label").asText();
      }
      rules[i] = new RuleSpec(r.get("id").asText(), r.get("series").asInt(), r.get("aggregation").asText(),
          r.get("partial").asBoolean(), ">=".equals(r.get("comparator").asText()), thresholds, severities, texts,
          labels, r.get("for_ms").asLong(), r.get("clear").asDouble(), r.get("clear_text").asText(),
          r.get("cooldown_ms").asLong(), r.get("window_ms").asLong(), r.get("window").asText(),
          r.get("metric").asText(), r.get("what").asText(), r.get("unit").asText(), r.get("standard").asText());
    }
    return new Spec(UUID.fromString(doc.get("namespace").asText()), doc.get("fingerprint").asText(), doc.get("watermark_ms").asLong(), metrics,
        seriesMetric, seriesWindow, rules);
  }
}
