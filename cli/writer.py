"""Write a set of generated files all-or-nothing: every file goes to a temporary sibling first, and only
when all were written are they renamed into place; on any error the temporaries are removed and nothing in
the output directory has changed (apart from directories created on the way)."""

from __future__ import annotations

import os
from pathlib import Path

from cli.errors import Failure


def write_all(files: list[tuple[Path, str]]) -> None:
    files = [(Path(os.path.normpath(target)), content) for target, content in files]
    for target, _ in files:
        if target.is_dir():
            raise Failure(f"cannot write {target}: it is a directory (nothing was written)")
    temps: list[tuple[Path, Path]] = []
    try:
        for target, content in files:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.dorgu-tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            temps.append((tmp, target))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(content)
    except OSError as e:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise Failure(f"cannot write {e.filename}: {e.strerror} (nothing was written)") from e
    for i, (tmp, target) in enumerate(temps):
        try:
            os.replace(tmp, target)
        except OSError as e:
            for rest, _ in temps[i:]:
                rest.unlink(missing_ok=True)
            raise Failure(f"cannot write {target}: {e.strerror}") from e
