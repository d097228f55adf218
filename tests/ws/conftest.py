"""Fixtures of the WebSocket tests: one real operator (supervisor + two websocket children) per module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dorgu.envtest import ControlPlane
from tests.ws.kit import Operator


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """``open``: --ws-auth=none (the Go CLI's way); ``auth``: TokenReview + SubjectAccessReview."""
    tmp: Path = tmp_path_factory.mktemp("ws-operator")
    op = Operator(control_plane.kubeconfig, {"open": {"ws_auth": "none"}, "auth": {"ws_auth": "token"}}, tmp)
    try:
        op.ready("open")
        op.ready("auth")
        yield op
    finally:
        op.stop()
