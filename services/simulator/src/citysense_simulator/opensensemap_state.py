"""What the openSenseMap poller has already sent, persisted so a restart never republishes a measurement.

Per sensor: the ``createdAt`` of the last measurement delivered. Per station: the next ``seq``. Saved after the
producer has confirmed delivery of a poll round, by writing a temporary file, fsync-ing it and renaming it over
the old one, so a crash leaves either the old state or the new one, never half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


class SentState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_sent: dict[str, str] = {}  # sensor id -> createdAt (RFC 3339, compared as instants by callers)
        self.next_seq: dict[str, int] = {}  # station id -> next seq
        if path.exists():
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
                self.last_sent = {str(k): str(v) for k, v in doc.get("last_sent", {}).items()}
                self.next_seq = {str(k): int(v) for k, v in doc.get("next_seq", {}).items()}
            except (OSError, ValueError, AttributeError) as exc:
                raise ValueError(f"cannot read poller state {path}: {exc}; move it away to start afresh "
                                 "(measurements still on openSenseMap would then be sent again)") from None

    def take_seq(self, station_id: str) -> int:
        seq = self.next_seq.get(station_id, 0)
        self.next_seq[station_id] = seq + 1
        return seq

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": 1, "last_sent": self.last_sent, "next_seq": self.next_seq}
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(doc, out, separators=(",", ":"), sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
