"""``dorgu bench --plot`` without matplotlib (the ``bench`` extra): exit 2 before anything runs, naming the
install command. tests/e2e/test_wheel.py checks the same in a venv that really lacks it."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec

import pytest

from cli.bench import report
from cli.main import main


def test_plot_without_matplotlib_says_how_to_install_the_bench_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "matplotlib" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    # --kubeconfig names no file: had the check not come first, the bench would fail on it (exit 1).
    assert main(["bench", "--kubeconfig", "/nonexistent", "--plot", "bench.png"]) == 2
    err = capsys.readouterr().err
    assert report.MATPLOTLIB_MISSING in err and "pip install 'dorgu[bench]'" in err
