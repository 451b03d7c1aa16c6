package org.citysense.scorer.realtime;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/** Everything the real-time path keeps per station, stored as one versioned byte array in the state store. */
final class StationState {
  private static final int FORMAT = 1;

  long maxBoundedMs = Long.MIN_VALUE; // newest event time seen, each capped at the broker's clock
  long seenMs = Long.MIN_VALUE;
  double lat = Double.NaN;
  double lon = Double.NaN;
  final WindowSeries[] series;
  final Slot[] slots;
  private final String fingerprint;

  StationState(Spec spec) {
    fingerprint = spec.fingerprint;
    series = new WindowSeries[spec.seriesWindowMs.length];
    for (int i = 0; i < series.length; i++) {
      series[i] = new WindowSeries(spec.seriesWindowMs[i]);
    }
    slots = new Slot[spec.rules.length];
    for (int i = 0; i < slots.length; i++) {
      slots[i] = new Slot();
    }
  }

  byte[] toBytes() {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream(256 + series.length * 1300);
    try (DataOutputStream out = new DataOutputStream(bytes)) {
      out.writeInt(FORMAT);
      out.writeUTF(fingerprint);
      out.writeLong(maxBoundedMs);
      out.writeLong(seenMs);
      out.writeDouble(lat);
      out.writeDouble(lon);
      for (WindowSeries s : series) {
        s.write(out);
      }
      for (Slot s : slots) {
        s.write(out);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  /** The stored state, or a fresh one when it was written for another set of rules (they changed). */
  static StationState fromBytes(Spec spec, byte[] stored) {
    StationState state = new StationState(spec);
    try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(stored))) {
      if (in.readInt() != FORMAT || !in.readUTF().equals(spec.fingerprint)) {
        return state;
      }
      state.maxBoundedMs = in.readLong();
      state.seenMs = in.readLong();
      state.lat = in.readDouble();
      state.lon = in.readDouble();
      for (WindowSeries s : state.series) {
        s.read(in);
      }
      for (Slot s : state.slots) {
        s.read(in);
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return state;
  }
}
