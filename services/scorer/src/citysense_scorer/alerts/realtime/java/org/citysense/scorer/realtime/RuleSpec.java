package org.citysense.scorer.realtime;

import java.io.Serializable;

/**
 * One threshold rule of config/rules.yaml as the real-time lifecycle needs it. The Python side generates these
 * from the rule file (alerts/realtime/spec.py), including the fixed parts of each message, so no rule is written
 * by hand here.
 */
final class RuleSpec implements Serializable {
  private static final long serialVersionUID = 1L;

  final String id;
  final int series; // index into the spec's series list
  final String aggregation; // value | mean | max
  final boolean partial;
  final boolean inclusive; // comparator ">=" (else ">")
  final double[] thresholds; // ascending
  final String[] severities;
  final String[] thresholdTexts; // Python's "{:g}" of each threshold
  final String[] labels;
  final long forMs;
  final double clear;
  final String clearText;
  final long cooldownMs;
  final long windowMs;
  final String window; // "1m"
  final String metric;
  final String what; // "PM2.5 1-minute mean"
  final String unit;
  final String standard;

  RuleSpec(String id, int series, String aggregation, boolean partial, boolean inclusive, double[] thresholds,
      String[] severities, String[] thresholdTexts, String[] labels, long forMs, double clear, String clearText,
      long cooldownMs, long windowMs, String window, String metric, String what, String unit, String standard) {
    this.id = id;
    this.series = series;
    this.aggregation = aggregation;
    this.partial = partial;
    this.inclusive = inclusive;
    this.thresholds = thresholds;
    this.severities = severities;
    this.thresholdTexts = thresholdTexts;
    this.labels = labels;
    this.forMs = forMs;
    this.clear = clear;
    this.clearText = clearText;
    this.cooldownMs = cooldownMs;
    this.windowMs = windowMs;
    this.window = window;
    this.metric = metric;
    this.what = what;
    this.unit = unit;
    this.standard = standard;
  }

  boolean exceeds(double value, double level) {
    return inclusive ? value >= level : value > level;
  }

  /** Index of the highest band reached, or -1 below the lowest. */
  int bandOf(double value) {
    int reached = -1;
    for (int i = 0; i < thresholds.length; i++) {
      if (exceeds(value, thresholds[i])) {
        reached = i;
      }
    }
    return reached;
  }
}
