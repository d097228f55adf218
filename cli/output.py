"""Styled terminal output shared by all commands (``--no-color`` and ``NO_COLOR`` honoured).

Colour is used only when the stream is a TTY, ``--no-color`` was not given and ``NO_COLOR`` is unset or
empty (https://no-color.org). Symbols are always printed; only the ANSI codes depend on colour.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

_GREEN, _ORANGE, _BLUE, _RED, _GREY = 42, 214, 39, 196, 240


def color_enabled(stream: TextIO, *, no_color: bool = False) -> bool:
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Output:
    """``✓`` success, ``⚠`` warning, ``ℹ`` info, ``✗`` error (stderr), dim text and headers."""

    def __init__(
        self, *, no_color: bool = False, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._color_out = color_enabled(self.out, no_color=no_color)
        self._color_err = color_enabled(self.err, no_color=no_color)

    @staticmethod
    def _paint(text: str, code: int, on: bool, *, bold: bool = False) -> str:
        if not on:
            return text
        return f"\x1b[{'1;' if bold else ''}38;5;{code}m{text}\x1b[0m"

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def success(self, msg: str) -> None:
        print(self._paint(f"✓ {msg}", _GREEN, self._color_out), file=self.out)

    def warning(self, msg: str) -> None:
        print(self._paint(f"⚠ {msg}", _ORANGE, self._color_out), file=self.out)

    def info(self, msg: str) -> None:
        print(self._paint(f"ℹ {msg}", _BLUE, self._color_out), file=self.out)

    def error(self, msg: str) -> None:
        print(self._paint(f"✗ {msg}", _RED, self._color_err), file=self.err)

    def dim(self, msg: str) -> None:
        print(self._paint(msg, _GREY, self._color_out), file=self.out)

    def header(self, msg: str) -> None:
        print(file=self.out)
        print(f"\x1b[1m{msg}\x1b[0m" if self._color_out else msg, file=self.out)
        print(file=self.out)

    def diff_line(self, line: str) -> None:
        if line.startswith("+") and not line.startswith("+++"):
            print(self._paint(line, _GREEN, self._color_out), file=self.out)
        elif line.startswith("-") and not line.startswith("---"):
            print(self._paint(line, _RED, self._color_out), file=self.out)
        else:
            print(line, file=self.out)


def warn(msg: str) -> None:
    """A plain ``Warning: …`` line on stderr (analyzer warnings)."""
    print(f"Warning: {msg}", file=sys.stderr)
