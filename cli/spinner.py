"""A braille spinner on stderr — only on a TTY; elsewhere (pipes, CI, tests) it prints nothing."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import TextIO

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Spinner:
    def __init__(self, text: str, *, stream: TextIO | None = None, interval_s: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.text = text
        self.interval_s = interval_s
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        i = 0
        while not self._stop.wait(self.interval_s if i else 0):
            self.stream.write(f"\r{FRAMES[i % len(FRAMES)]} {self.text}\x1b[K")
            self.stream.flush()
            i += 1

    def start(self) -> Spinner:
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="spinner", daemon=True)
            self._thread.start()
        return self

    def update(self, text: str) -> None:
        self.text = text

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def __enter__(self) -> Spinner:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
