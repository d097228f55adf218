"""A real local Kubernetes control plane for tests, benchmarks and demos (like controller-runtime's envtest).

Python API: :class:`ControlPlane` / :class:`ControlPlaneSettings`; pytest: ``dorgu.envtest.pytest_plugin``;
command line: ``python -m dorgu.envtest up|down|env|run|build`` (also ``dorgu dev cluster ...``).
"""

from dorgu.envtest.binaries import Binaries, EnvtestSetupError, ensure_binaries
from dorgu.envtest.controlplane import (
    ControlPlane,
    ControlPlaneError,
    ControlPlaneSettings,
    PortClash,
    control_plane,
)
from dorgu.envtest.http import ApiError, HarnessClient, format_table

__all__ = [
    "ApiError",
    "Binaries",
    "ControlPlane",
    "ControlPlaneError",
    "ControlPlaneSettings",
    "EnvtestSetupError",
    "HarnessClient",
    "PortClash",
    "control_plane",
    "ensure_binaries",
    "format_table",
]
