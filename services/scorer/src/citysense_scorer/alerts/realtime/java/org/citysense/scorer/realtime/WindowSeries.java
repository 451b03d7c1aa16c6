package org.citysense.scorer.realtime;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;

/**
 * One station's bucketed window of one (metric, window) series: 60 buckets of window/60, as a ring aligned to the
 * newest bucket, the same layout as the micro-batch engine's series table. A reading whose bucket has already left
 * the window is dropped, so the window never counts it again.
 */
final class WindowSeries {
  static final int BUCKETS = 60;
  static final long NO_BUCKET = Long.MIN_VALUE;

  final long widthMs;
  final double[] total = new double[BUCKETS];
  final int[] count = new int[BUCKETS];
  final double[] peak = new double[BUCKETS];
  long newest = NO_BUCKET;
  long firstMs;
  long lastMs = -1;
  double lastValue = Double.NaN;

  WindowSeries(long windowMs) {
    this.widthMs = Math.max(1, windowMs / BUCKETS);
    java.util.Arrays.fill(peak, Double.NEGATIVE_INFINITY);
  }

  void add(long ts, double value) {
    boolean fresh = newest == NO_BUCKET;
    firstMs = fresh ? ts : Math.min(firstMs, ts);
    if (ts >= lastMs) {
      lastMs = ts;
      lastValue = value;
    }
    long target = Math.floorDiv(lastMs, widthMs);
    long base = fresh ? target - BUCKETS : newest;
    long advance = Math.min(target - base, BUCKETS);
    for (long step = 1; step <= advance; step++) {
      int slot = (int) Math.floorMod(base + step, (long) BUCKETS);
      total[slot] = 0.0;
      count[slot] = 0;
      peak[slot] = Double.NEGATIVE_INFINITY;
    }
    newest = target; // never behind the old newest bucket: lastMs never goes back
    long bucket = Math.floorDiv(ts, widthMs);
    if (bucket > newest - BUCKETS) {
      int slot = (int) Math.floorMod(bucket, (long) BUCKETS);
      total[slot] += value;
      count[slot] += 1;
      peak[slot] = Math.max(peak[slot], value);
    }
  }

  /** The window's mean, max or latest value; NaN when it holds no reading. */
  double aggregate(String how) {
    if ("value".equals(how)) {
      return lastValue;
    }
    long n = 0;
    double sum = 0.0;
    double max = Double.NEGATIVE_INFINITY;
    for (int i = 0; i < BUCKETS; i++) {
      n += count[i];
      sum += total[i];
      max = Math.max(max, peak[i]);
    }
    if (n == 0) {
      return Double.NaN;
    }
    return "mean".equals(how) ? sum / n : max;
  }

  /** Whether the data spans the whole window (to one bucket). */
  boolean complete(long windowMs) {
    return lastMs - firstMs >= windowMs - widthMs;
  }

  void write(DataOutputStream out) throws IOException {
    out.writeLong(newest);
    out.writeLong(firstMs);
    out.writeLong(lastMs);
    out.writeDouble(lastValue);
    for (int i = 0; i < BUCKETS; i++) {
      out.writeDouble(total[i]);
      out.writeInt(count[i]);
      out.writeDouble(peak[i]);
    }
  }

  void read(DataInputStream in) throws IOException {
    newest = in.readLong();
    firstMs = in.readLong();
    lastMs = in.readLong();
    lastValue = in.readDouble();
    for (int i = 0; i < BUCKETS; i++) {
      total[i] = in.readDouble();
      count[i] = in.readInt();
      peak[i] = in.readDouble();
    }
  }
}
