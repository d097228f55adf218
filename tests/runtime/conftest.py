"""Fixtures shared by the runtime's tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.test_supervisor import SupervisorProcess


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., SupervisorProcess]]:
    """Starts supervisor processes (``supervisor_main.py``); cleans up whatever each test started."""
    started: list[SupervisorProcess] = []

    def _start(*components: dict[str, Any], **settings: Any) -> SupervisorProcess:
        sup = SupervisorProcess(tmp_path=tmp_path, components=list(components), **settings)
        started.append(sup)
        return sup

    yield _start
    for sup in started:
        sup.cleanup()
