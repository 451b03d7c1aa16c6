"""A dependency-free progress bar for stderr: count, percent, rate and ETA.

On a terminal it redraws one line (at most 5 times a second); into a file or a pipe it writes a plain line every
``log_every`` seconds instead, so CI logs and ``2> replay.log`` stay readable.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressBar:
    def __init__(self, total: int, *, label: str = "rows", stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic, width: int = 30, tty: bool | None = None,
                 log_every: float = 10.0) -> None:
        self.total, self.label, self.width = max(0, total), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = 0.2 if self.tty else log_every
        self.done = 0
        self.started = clock()
        self._last_draw = -1e18

    def render(self) -> str:
        elapsed = self.clock() - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        fraction = self.done / self.total if self.total else 1.0
        filled = int(round(self.width * min(1.0, fraction)))
        eta = (self.total - self.done) / rate if rate > 0 else None
        bar = "#" * filled + "-" * (self.width - filled)
        return (f"[{bar}] {fraction * 100:5.1f}% {self.done:,}/{self.total:,} {self.label} "
                f"{rate:,.0f}/s ETA {_duration(eta) if eta is not None else '?'}")

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self.clock()
        if now - self._last_draw >= self.interval:
            self._draw()
            self._last_draw = now

    def _draw(self, final: bool = False) -> None:
        text = self.render()
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        self._draw(final=True)
