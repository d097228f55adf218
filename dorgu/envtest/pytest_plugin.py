"""pytest fixtures for a real control plane.

Enable with ``pytest_plugins = ["dorgu.envtest.pytest_plugin"]``. Override ``envtest_settings`` (session
scope) in a ``conftest.py`` to install CRDs or pass apiserver flags. ``control_plane`` is shared by the whole
test session; a destructive test starts its own with ``ControlPlane(...)`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dorgu.envtest.controlplane import ControlPlane, ControlPlaneSettings


@pytest.fixture(scope="session")
def envtest_settings() -> ControlPlaneSettings:
    """Settings of the shared control plane (override in conftest.py)."""
    return ControlPlaneSettings()


@pytest.fixture(scope="session")
def control_plane(envtest_settings: ControlPlaneSettings) -> Iterator[ControlPlane]:
    """One control plane for the whole session, stopped (nothing left behind) at the end."""
    with ControlPlane(envtest_settings) as cp:
        yield cp
