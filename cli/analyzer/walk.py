"""A deterministic, bounded walk of an app's source tree.

Directories named in :data:`SKIP_DIRS` are pruned by *name*: only that directory, never its siblings or the
rest of its parent (a ``vendor`` or ``.git`` beside the app's sources hides nothing else). Symlinks are not
followed. Files over :data:`MAX_FILE_BYTES`, binary files (a NUL byte in the first 8 KiB) and unreadable
files are skipped, the latter with a warning; at most :data:`MAX_FILES` files are visited.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

SKIP_DIRS = frozenset(
    {
        ".git", ".hg", ".svn", ".idea", ".vscode", ".venv", "venv", "env", "__pycache__", ".mypy_cache",
        ".pytest_cache", ".ruff_cache", ".tox", ".nox", "node_modules", "bower_components", "vendor",
        "target", "dist", "build", "out", "bin", "obj", ".next", ".nuxt", ".gradle", ".terraform",
        "coverage", ".cache", "tmp", "log", "logs",
    }
)  # fmt: skip
MAX_FILES = 20_000
MAX_FILE_BYTES = 1 << 20


def source_files(
    root: Path, *, extensions: frozenset[str], on_unreadable: Callable[[Path, str], None]
) -> Iterator[tuple[Path, str]]:
    """``(path, text)`` of source files under ``root`` in lexical order."""
    seen = 0
    for dirpath, dirnames, filenames in os.walk(
        root, onerror=lambda e: on_unreadable(Path(e.filename), e.strerror)
    ):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for fn in sorted(filenames):
            if os.path.splitext(fn)[1] not in extensions:
                continue
            seen += 1
            if seen > MAX_FILES:
                return
            p = Path(dirpath) / fn
            try:
                if p.is_symlink() or p.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = p.read_bytes()
            except OSError as e:
                on_unreadable(p, e.strerror or str(e))
                continue
            if b"\0" in data[:8192]:
                continue
            yield p, data.decode("utf-8", errors="replace")


def read_text(path: Path, *, what: str) -> str | None:
    """A key file's text; ``None`` if absent. Unreadable, or larger than
    :data:`cli.inputfile.MAX_INPUT_BYTES` → :class:`~cli.errors.InputError`."""
    from cli.errors import InputError
    from cli.inputfile import read_bounded

    try:
        data = read_bounded(path, what=what)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as e:
        raise InputError(
            f"cannot read {what} {path}: {e.strerror or e} (make it readable, e.g. chmod a+r, or remove it)"
        ) from e
    return data.decode("utf-8", errors="replace")
