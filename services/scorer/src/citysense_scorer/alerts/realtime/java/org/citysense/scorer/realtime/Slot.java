package org.citysense.scorer.realtime;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;

/** Lifecycle state of one (station, rule): the open alert, or a pending condition, and the cooldown. */
final class Slot {
  static final long NONE = Long.MIN_VALUE;

  String alertId; // null: no open alert
  long openedMs;
  int band = -1;
  int events;
  long pendingSince = NONE;
  long cooldownUntil = -1;

  void reset(long cooldownUntil) {
    alertId = null;
    openedMs = 0;
    band = -1;
    events = 0;
    pendingSince = NONE;
    this.cooldownUntil = cooldownUntil;
  }

  void write(DataOutputStream out) throws IOException {
    out.writeUTF(alertId == null ? "" : alertId);
    out.writeLong(openedMs);
    out.writeInt(band);
    out.writeInt(events);
    out.writeLong(pendingSince);
    out.writeLong(cooldownUntil);
  }

  void read(DataInputStream in) throws IOException {
    String id = in.readUTF();
    alertId = id.isEmpty() ? null : id;
    openedMs = in.readLong();
    band = in.readInt();
    events = in.readInt();
    pendingSince = in.readLong();
    cooldownUntil = in.readLong();
  }
}
