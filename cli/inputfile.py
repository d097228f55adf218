"""Reading a key input file (Dockerfile, compose file, manifest, config) with a size cap."""

from __future__ import annotations

import os
from pathlib import Path

from cli.errors import InputError

MAX_INPUT_BYTES = 1 << 20
"""The largest key file (Dockerfile, compose file, manifest, config) dorgu reads: a bigger one is refused
with a message, not read into memory (a 50 MB "Dockerfile" is not one)."""


def read_bounded(path: Path, *, what: str, limit: int = MAX_INPUT_BYTES) -> bytes:
    """At most ``limit`` bytes of ``path``; a larger file → :class:`~cli.errors.InputError`. ``OSError``
    (absent, unreadable) propagates."""
    with open(path, "rb") as fh:
        data = fh.read(limit + 1)
        size = max(os.fstat(fh.fileno()).st_size, len(data))
    if len(data) > limit:
        raise InputError(
            f"{what} {path} is too large ({size} bytes; dorgu reads at most {limit} bytes): "
            "point dorgu at the right file, or shrink it"
        )
    return data
