"""A one-line progress bar on stderr for ``dorgu bench`` — only on a TTY; elsewhere it prints nothing."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``phase(name, total)`` starts a bar; ``update(done)`` redraws it (at most 10 times a second)."""

    def __init__(self, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.width = width
        self.name, self.total, self.started, self._drawn = "", 1, time.monotonic(), 0.0

    def phase(self, name: str, total: int) -> None:
        self.name, self.total, self.started, self._drawn = name, max(1, total), time.monotonic(), 0.0
        self.update(0, force=True)

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        self._drawn = now
        frac = min(1.0, done / self.total)
        full = int(frac * self.width)
        bar = "█" * full + "░" * (self.width - full)
        line = f"\r{self.name:<24} {bar} {done}/{self.total}  {now - self.started:5.1f} s\x1b[K"
        self.stream.write(line)
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r{text}\x1b[K\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
