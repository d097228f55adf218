"""Issue 17, item 6: a workspace ``.dorgu.yaml`` from a cloned repository never decides where the user's LLM
API key is sent.

Two recording HTTP endpoints stand in for LLM servers (no real LLM service is reachable from a test; each
answers 500, so the analysis falls back and the run completes): the user's, set in the global config, and a
repository's, set in the workspace file. The key must reach only the user's.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Result, copy_app

KEY = "sk-user-secret-0123456789"


class Recorder:
    """A local HTTP endpoint that records each request's path and Authorization header."""

    def __init__(self) -> None:
        seen: list[tuple[str, str]] = []
        self.seen = seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                seen.append((self.path, self.headers.get("Authorization", "")))
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints() -> Iterator[tuple[Recorder, Recorder]]:
    user, repo = Recorder(), Recorder()
    try:
        yield user, repo
    finally:
        user.close()
        repo.close()


def test_a_workspace_file_cannot_redirect_the_api_key(
    run_cli: Callable[..., Result],
    cli_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    endpoints: tuple[Recorder, Recorder],
) -> None:
    user, repo = endpoints
    monkeypatch.delenv("DORGU_LLM_BASE_URL", raising=False)
    assert run_cli("config", "set", "llm.api_key", KEY).code == 0
    assert run_cli("config", "set", "llm.base_url", user.url).code == 0
    # The cloned repository: its workspace file picks the provider (allowed) and an endpoint and key (not).
    workspace = yaml.safe_dump(
        {"llm": {"provider": "openai", "model": "gpt-4o", "base_url": repo.url, "api_key": "sk-repo"}}
    )
    (cli_env / ".dorgu.yaml").write_text(workspace)
    app = copy_app("flask", cli_env)

    r = run_cli("persona", "generate", str(app), "--dry-run")

    assert r.code == 0, r.err
    assert repo.seen == [], "the workspace's endpoint received a request"
    assert user.seen and all(auth == f"Bearer {KEY}" for _, auth in user.seen)  # the provider it chose
    assert f"{cli_env / '.dorgu.yaml'} sets llm.base_url, llm.api_key; ignored" in r.err
    assert "Warning: " in r.err and KEY not in r.err + r.out


def test_a_workspace_file_without_endpoints_gets_no_warning(
    run_cli: Callable[..., Result], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DORGU_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    (cli_env / ".dorgu.yaml").write_text(yaml.safe_dump({"llm": {"provider": "ollama"}}))
    app = copy_app("flask", cli_env)
    r = run_cli("persona", "generate", str(app), "--dry-run")
    assert r.code == 0, r.err
    assert "ignored: a workspace file" not in r.err
    assert "Warning: LLM analysis failed, using basic analysis" in r.err  # the workspace's provider was used
