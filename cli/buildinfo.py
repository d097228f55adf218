"""The build's git commit and date, written into the package at build time.

``python -m cli.buildinfo`` (run by ``make deps`` and ``make image``) writes ``cli/_build.py`` — not in git —
with the checkout's ``git rev-parse HEAD`` and the build time (``SOURCE_DATE_EPOCH`` when set, for
reproducible builds; else now, UTC). The file is rewritten only when the commit changed, so the date is when
that commit was first built. A wheel or image made from the checkout carries the file (it is a module of the
``cli`` package); anything built without git, or never stamped, reports ``unknown``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

UNKNOWN = "unknown"
BUILD_FILE = Path(__file__).resolve().parent / "_build.py"
"""Where the stamp lives: ``cli/_build.py`` next to this module."""


@dataclass(frozen=True, kw_only=True)
class BuildInfo:
    """What ``dorgu version`` reports besides the version."""

    commit: str
    """The git commit the package was built from, or ``unknown``."""
    built: str
    """When it was built (RFC 3339, UTC), or ``unknown``."""


def read(path: Path = BUILD_FILE) -> BuildInfo:
    """The stamp in ``path`` (literal assignments only, never executed); ``unknown`` when absent or odd."""
    values: dict[str, str] = {}
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        tree = ast.Module(body=[], type_ignores=[])
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with_value = node.value
            if isinstance(with_value, ast.Constant) and isinstance(with_value.value, str):
                values[node.targets[0].id] = with_value.value
    return BuildInfo(commit=values.get("COMMIT") or UNKNOWN, built=values.get("BUILT") or UNKNOWN)


def git_commit(root: Path) -> str | None:
    """``git rev-parse HEAD`` in ``root``, or None when it is not a git checkout (or git is missing)."""
    try:
        p = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = p.stdout.strip()
    return sha if p.returncode == 0 and sha else None


def build_time(*, now: datetime, environ: dict[str, str]) -> str:
    """``SOURCE_DATE_EPOCH`` when set (reproducible builds), else ``now``; RFC 3339 in UTC."""
    epoch = environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), UTC) if epoch.isdigit() else now.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def stamp(*, root: Path, path: Path, now: datetime, environ: dict[str, str]) -> BuildInfo | None:
    """Write ``path`` for the checkout at ``root`` unless it already names its commit; None without git
    (``path`` is then left as it is)."""
    commit = git_commit(root)
    if commit is None:
        return None
    current = read(path)
    if current.commit == commit:
        return current
    info = BuildInfo(commit=commit, built=build_time(now=now, environ=environ))
    text = (
        '"""Written by `python -m cli.buildinfo` (make deps) at build time; not in git."""\n\n'
        f"COMMIT = {info.commit!r}\n"
        f"BUILT = {info.built!r}\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return info


def main() -> int:
    info = stamp(
        root=BUILD_FILE.parent.parent, path=BUILD_FILE, now=datetime.now(UTC), environ=dict(os.environ)
    )
    if info is None:
        print(
            f"not a git checkout: {BUILD_FILE} left as it is (dorgu version says {UNKNOWN})", file=sys.stderr
        )
    else:
        print(f"{BUILD_FILE}: commit {info.commit}, built {info.built}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
