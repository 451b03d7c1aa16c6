"""Which Kafka offsets may be committed: only those below the oldest event whose deliveries are not all recorded.

Events are processed concurrently (a slow subscriber must not hold up others), so they finish out of order; the
commit point per partition is the lowest offset still in flight, or one past the highest offset seen.
"""

from __future__ import annotations

import threading
from collections.abc import Collection


class OffsetTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # rebalance callbacks run on the Kafka thread
        self._in_flight: dict[tuple[str, int], set[int]] = {}
        self._next: dict[tuple[str, int], int] = {}
        self._committed: dict[tuple[str, int], int] = {}

    def started(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            key = (topic, partition)
            self._in_flight.setdefault(key, set()).add(offset)
            self._next[key] = max(self._next.get(key, 0), offset + 1)

    def finished(self, topic: str, partition: int, offset: int) -> None:
        with self._lock:
            self._in_flight.get((topic, partition), set()).discard(offset)

    def in_flight(self, topics: Collection[str] | None = None) -> int:
        """Messages started and not finished, of ``topics`` (None: of every topic)."""
        with self._lock:
            return sum(len(v) for (topic, _), v in self._in_flight.items() if topics is None or topic in topics)

    def committable(self) -> dict[tuple[str, int], int]:
        """Partition -> offset to commit (the next one to read), only where it moved since the last commit."""
        with self._lock:
            out = {}
            for key, nxt in self._next.items():
                pending = self._in_flight.get(key)
                position = min(pending) if pending else nxt
                if position > self._committed.get(key, -1):
                    out[key] = position
            return out

    def mark_committed(self, positions: dict[tuple[str, int], int]) -> None:
        with self._lock:
            for key, position in positions.items():
                self._committed[key] = max(self._committed.get(key, -1), position)

    def forget(self, partitions: list[tuple[str, int]]) -> None:
        """After a revoke: another consumer owns these now and replays what we had not committed."""
        with self._lock:
            for key in partitions:
                self._in_flight.pop(key, None)
                self._next.pop(key, None)
                self._committed.pop(key, None)
