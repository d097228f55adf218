"""The app's git remote — only when the app directory is itself a repository root, so a directory inside
another repository (a fixture, a monorepo package) does not inherit that repository's origin. Read from
``.git/config`` directly: no ``git`` binary needed."""

from __future__ import annotations

import configparser
import re
from pathlib import Path


def normalize_remote(url: str) -> str:
    url = url.strip()
    m = re.match(r"^[\w.-]+@([^:/]+):(.+)$", url)  # scp-like git@host:org/repo.git
    if m:
        url = f"https://{m.group(1)}/{m.group(2)}"
    url = re.sub(r"^(https?://)[^@/]+@", r"\1", url)  # drop credentials
    return url.removesuffix("/").removesuffix(".git")


def git_remote(app_dir: Path) -> str:
    git = app_dir / ".git"
    if git.is_file():  # a worktree/submodule: "gitdir: <path>"
        text = git.read_text(errors="replace").strip()
        if not text.startswith("gitdir:"):
            return ""
        git = (app_dir / text.split(":", 1)[1].strip()).resolve()
        common = git / "commondir"
        if common.is_file():
            git = (git / common.read_text().strip()).resolve()
    cfg_path = git / "config"
    if not cfg_path.is_file():
        return ""
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    try:
        cp.read(cfg_path, encoding="utf-8")
    except (configparser.Error, OSError, UnicodeDecodeError):
        return ""
    section = 'remote "origin"'
    if cp.has_option(section, "url"):
        return normalize_remote(cp.get(section, "url"))
    return ""
