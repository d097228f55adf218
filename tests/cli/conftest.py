"""Helpers: run the CLI in-process with a clean environment (no user config, no kubeconfig, no colour)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import pipeline
from cli.main import main

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "tests" / "fixtures" / "apps"
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
FIXTURE_APPS = (
    "aspnet", "compose-app", "django", "express", "fastapi", "flask", "go-gin", "gradle-kotlin",
    "monorepo/services/billing", "nestjs", "php-laravel", "rails", "rust-axum", "spring-maven",
)  # fmt: skip


LLM_ENV = (
    "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_HOST",
    "DORGU_LLM_BASE_URL",
)  # fmt: skip


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    for var in LLM_ENV:  # the machine's LLM keys and endpoints never reach a test
        monkeypatch.delenv(var, raising=False)
    # the LLM step's retries do not wait for real (tests that look at the waits record them instead)
    monkeypatch.setattr(pipeline, "LLM_SLEEP", lambda _s: None)
    monkeypatch.setenv("NO_COLOR", "1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def run_cli(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*argv: str) -> Result:
        code = main(list(argv))
        cap = capsys.readouterr()
        return Result(code, cap.out, cap.err)

    return run


def copy_app(name: str, dest: Path) -> Path:
    """Copy a fixture app into ``dest``; ``monorepo`` gets a root ``.git`` with its own origin."""
    top = name.split("/", 1)[0]
    shutil.copytree(APPS / top, dest / top)
    if top == "monorepo":
        (dest / top / ".git").mkdir()
        (dest / top / ".git" / "config").write_text(
            '[remote "origin"]\n\turl = git@github.com:example/mono.git\n'
        )
    return dest / name


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
