"""Write a set of generated files all-or-nothing, never through a symbolic link, never over a person's edits.

:func:`plan` decides per file: *created* (absent), *unchanged* (same bytes), *updated* (dorgu's own file,
untouched since — see :mod:`cli.generator.stamp` — or ``force``), *kept* (edited since, or not dorgu's;
only ``force`` replaces it). :func:`write` then writes the created and updated ones:

* each file first goes to a fresh temporary sibling made with :func:`tempfile.mkstemp` (``O_CREAT|O_EXCL``,
  and ``O_NOFOLLOW`` where the OS has it; a random name), so a symbolic link planted where a temporary
  would go — ``.PERSONA.md.dorgu-tmp → ~/.bashrc`` — is never opened;
* a target, or any directory between the base (the current directory, when the targets are below it) and
  the target, that is a symbolic link is refused before anything is written: dorgu writes where it was
  told, not where a repository's link points;
* only when every temporary is written are they renamed into place; a failed rename puts back what was
  renamed before it (the previous file, from a hard-linked backup) and removes what it created;
* on any failure the temporaries, backups and every directory this run created are removed: nothing is
  left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cli.errors import Failure, InputError
from cli.generator.stamp import state

Action = Literal["created", "updated", "unchanged", "kept"]
MAX_EXISTING_BYTES = 16 << 20
"""An existing target larger than this is not read back (it cannot be a file dorgu wrote): it is kept."""


@dataclass(frozen=True)
class Planned:
    """What happens to one target."""

    target: Path
    """Where the file goes (normalised, as given: relative paths stay relative)."""
    content: str
    """The generated content."""
    action: Action
    """See the module docstring."""


def _base(targets: list[Path]) -> Path:
    cwd = Path.cwd()
    absolute = [Path(os.path.abspath(t)) for t in targets]
    if all(a.is_relative_to(cwd) for a in absolute):
        return cwd
    return Path(os.path.commonpath([a.parent for a in absolute]))


def _refuse_links(target: Path, base: Path) -> None:
    """Refuse ``target`` when it, or a directory between ``base`` and it, is a symbolic link."""
    absolute = Path(os.path.abspath(target))
    rel = absolute.relative_to(base) if absolute.is_relative_to(base) else Path(absolute.name)
    node = base if absolute.is_relative_to(base) else absolute.parent
    for part in rel.parts:
        node = node / part
        if node.is_symlink():
            what = "it is" if node == absolute else f"{os.path.relpath(node)} is"
            raise InputError(
                f"refusing to write {target}: {what} a symbolic link (to {os.readlink(node)}); "
                "dorgu does not write through links — remove the link or choose another --output "
                "(nothing was written)"
            )


def _read_existing(target: Path) -> str | None:
    """The target's text (``None``: absent); never follows a link."""
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise Failure(f"cannot read {target}: {e.strerror} (nothing was written)") from e
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_EXISTING_BYTES + 1)
    return "\0" if len(data) > MAX_EXISTING_BYTES else data.decode("utf-8", errors="replace")


def plan(files: list[tuple[Path, str]], *, force: bool = False) -> list[Planned]:
    """Decide every file's :data:`Action`; raises before anything is written when a target is unusable."""
    normalised = [(Path(os.path.normpath(t)), c) for t, c in files]
    base = _base([t for t, _ in normalised])
    out: list[Planned] = []
    for target, content in normalised:
        _refuse_links(target, base)
        if target.is_dir():
            raise Failure(f"cannot write {target}: it is a directory (nothing was written)")
        existing = _read_existing(target)
        if existing is None:
            action: Action = "created"
        elif existing == content:
            action = "unchanged"
        elif force or state(existing) == "pristine":
            action = "updated"
        else:
            action = "kept"
        out.append(Planned(target=target, content=content, action=action))
    return out


def _make_dirs(directory: Path, created: list[Path]) -> None:
    """``mkdir -p`` that records each directory it creates (outermost first)."""
    missing: list[Path] = []
    node = directory
    while not node.exists() and not node.is_symlink():
        missing.append(node)
        if node.parent == node:
            break
        node = node.parent
    for d in reversed(missing):
        os.mkdir(d, 0o755)
        created.append(d)


def _cleanup(paths: list[Path], dirs: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    for d in reversed(dirs):
        with contextlib.suppress(OSError):  # not empty: something else put files there
            os.rmdir(d)


def write(planned: list[Planned]) -> None:
    """Write the created and updated files of ``planned`` all-or-nothing (see the module docstring)."""
    todo = [p for p in planned if p.action in ("created", "updated")]
    created_dirs: list[Path] = []
    temps: list[tuple[Path, Planned]] = []
    try:
        for p in todo:
            _make_dirs(p.target.parent, created_dirs)
            fd, name = tempfile.mkstemp(dir=p.target.parent, prefix=f".{p.target.name}.", suffix=".dorgu-tmp")
            temps.append((Path(name), p))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o644)
                fh.write(p.content)
    except OSError as e:
        _cleanup([t for t, _ in temps], created_dirs)
        raise Failure(f"cannot write {e.filename or '?'}: {e.strerror} (nothing was written)") from e
    backups: dict[Path, Path] = {}
    for _tmp, p in temps:
        if p.action == "updated":
            backup = p.target.with_name(f".{p.target.name}.{secrets.token_hex(6)}.dorgu-old")
            try:
                os.link(p.target, backup, follow_symlinks=False)
                backups[p.target] = backup
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
                    _cleanup([t for t, _ in temps] + list(backups.values()), created_dirs)
                    raise Failure(f"cannot write {p.target}: {e.strerror} (nothing was written)") from e
    for i, (tmp, p) in enumerate(temps):
        try:
            os.replace(tmp, p.target)
        except OSError as e:
            for _done, q in temps[:i]:  # put back what was already renamed
                if q.target in backups:
                    os.replace(backups.pop(q.target), q.target)
                else:
                    q.target.unlink(missing_ok=True)
            _cleanup([t for t, _ in temps[i:]] + list(backups.values()), created_dirs)
            raise Failure(f"cannot write {p.target}: {e.strerror} (nothing was written)") from e
    _cleanup(list(backups.values()), [])


def write_all(files: list[tuple[Path, str]], *, force: bool = True) -> list[Planned]:
    """:func:`plan` then :func:`write`; returns the plan. ``force`` defaults to true for callers whose files
    carry no checksum header (``dorgu init --force`` has already decided)."""
    planned = plan(files, force=force)
    write(planned)
    return planned
