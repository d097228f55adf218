"""Where the manifests shipped with dorgu live (the repository's ``deploy/`` tree)."""

from __future__ import annotations

from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def crd_files() -> list[Path]:
    return sorted((DEPLOY / "crds").glob("*.yaml"))


def sample_files() -> list[Path]:
    return sorted((DEPLOY / "samples").glob("*.yaml"))
