"""Shared fixtures: one real control plane per test session, with dorgu's CRDs installed."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dorgu.envtest import ControlPlane, ControlPlaneSettings, HarnessClient

collect_ignore_glob = ["fixtures/*"]
"""The fixture apps are data: their own tests (tests/fixtures/apps/flask/tests/test_app.py, a trap for the
route finder) are never collected."""

pytest_plugins = ["dorgu.envtest.pytest_plugin"]

ROOT = Path(__file__).resolve().parent.parent
CRDS = tuple(sorted((ROOT / "deploy" / "crds").glob("*.yaml")))
SAMPLES = tuple(sorted((ROOT / "deploy" / "samples").glob("*.yaml")))
_ns_counter = itertools.count()


@pytest.fixture(scope="session")
def envtest_settings() -> ControlPlaneSettings:
    return ControlPlaneSettings(crds=CRDS)


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> HarnessClient:
    """The admin's harness client for the shared control plane."""
    return control_plane.client()


@pytest.fixture
def namespace(kube: HarnessClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (not waited for)."""
    name = f"t-{os.getpid()}-{next(_ns_counter)}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")
