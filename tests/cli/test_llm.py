"""Issue 20: the LLM providers (openai, anthropic, gemini, ollama) through their real client libraries.

No real provider can be reached or run here, so every test talks to a local stand-in
(:mod:`tests.cli.llm_standins`) that speaks the provider's documented wire format on 127.0.0.1; the client
libraries are the real ones, pointed at it through their base-URL options (``llm.base_url``,
``DORGU_LLM_BASE_URL`` or ``OLLAMA_HOST``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest
import yaml

from cli.analyzer import analyze
from cli.analyzer.llm import Assistant, RetryPolicy
from cli.analyzer.llm.clients import make_client
from cli.analyzer.llm.providers import PROVIDER_NAMES, PROVIDERS, ProviderSettings
from cli.settings import LLM_PROVIDERS, AppConfig, WorkspaceConfig, profile_for
from tests.cli.conftest import ROOT, Result, copy_app, tree
from tests.cli.llm_standins import PERSONA_MARKDOWN, Script, StandIn
from tests.cli.llm_standins import PROVIDERS as STANDIN_PROVIDERS

KEY = "sk-user-0123456789abcdef"
MODEL = "test-model-1"


@pytest.fixture
def standin() -> Iterator[Callable[..., StandIn]]:
    made: list[StandIn] = []

    def make(provider: str, script: Script | None = None) -> StandIn:
        made.append(StandIn(provider, script))
        return made[-1]

    yield make
    for s in made:
        s.close()


def configure(run_cli: Callable[..., Result], **keys: str) -> None:
    for key, value in keys.items():
        r = run_cli("config", "set", key.replace("_", ".", 1), value)
        assert r.code == 0, r.err


def body_of(path: Path) -> str:
    """A generated file without dorgu's checksum header line."""
    return path.read_text().split("\n", 1)[1]


def test_the_provider_names_are_the_go_tools() -> None:
    assert LLM_PROVIDERS == PROVIDER_NAMES == STANDIN_PROVIDERS == ("openai", "anthropic", "gemini", "ollama")


# ------------------------------------------------------------------------------------------- wire formats


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_each_provider_speaks_its_wire_format_with_key_and_model(
    provider: str, run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    """The stand-in is the provider's API (the real one cannot be run here): the real library must send the
    documented request — path, auth header with the key, model — and its answer must reach the files."""
    server = standin(provider)
    configure(run_cli, llm_provider=provider, llm_api_key=KEY, llm_base_url=server.base_url, llm_model=MODEL)
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "-o", "k8s")

    assert r.code == 0, r.err
    assert "LLM" not in r.err, r.err  # no failure, nothing rejected
    assert len(server.seen) == 2, [s.path for s in server.seen]  # the analysis, then PERSONA.md
    first = server.seen[0]
    if provider == "openai":
        assert first.path == "/v1/chat/completions"
        assert first.header("Authorization") == f"Bearer {KEY}"
        assert first.body["model"] == MODEL
        assert [m["role"] for m in first.body["messages"]] == ["system", "user"]
        assert first.body["response_format"] == {"type": "json_object"}
    elif provider == "anthropic":
        assert first.path == "/v1/messages"
        # the library sends the key as x-api-key (the documented header) or, in its newer releases, as a
        # bearer token; either way the key and an anthropic-version header must be there
        assert KEY in (first.header("x-api-key"), first.header("Authorization").removeprefix("Bearer "))
        assert first.header("anthropic-version")
        assert first.body["model"] == MODEL
        assert "DevOps" in first.body["system"] and first.body["max_tokens"] > 0
        assert [m["role"] for m in first.body["messages"]] == ["user"]
    elif provider == "gemini":
        assert first.path.endswith(f"/models/{MODEL}:generateContent"), first.path
        assert first.header("x-goog-api-key") == KEY
        assert "DevOps" in json.dumps(first.body["systemInstruction"])
        assert first.body["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert first.path == "/api/chat"  # Ollama's native API, not its OpenAI-compatible /v1
        assert first.body["model"] == MODEL
        assert first.body["stream"] is False and first.body["format"] == "json"
        assert not first.header("Authorization")  # Ollama takes no key
    assert "technical writer" in server.seen[1].text()
    persona = yaml.safe_load((cli_env / "k8s" / "persona.yaml").read_text())
    assert persona["spec"]["technical"]["description"].strip() == "An order API for the shop."
    assert body_of(cli_env / "PERSONA.md") == PERSONA_MARKDOWN


# ------------------------------------------------------------------------------------------- keys, endpoints


@pytest.mark.parametrize(
    ("provider", "var"),
    [
        ("openai", "OPENAI_API_KEY"),
        ("anthropic", "ANTHROPIC_API_KEY"),
        ("gemini", "GEMINI_API_KEY"),
        ("gemini", "GOOGLE_API_KEY"),
    ],
)
def test_the_providers_key_variable_wins_over_the_config(
    provider: str,
    var: str,
    run_cli: Callable[..., Result],
    cli_env: Path,
    standin: Callable[..., StandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = standin(provider)  # stand-in: the provider cannot be reached from a test
    configure(run_cli, llm_provider=provider, llm_api_key="sk-from-the-config-file")
    monkeypatch.setenv("DORGU_LLM_BASE_URL", server.base_url)
    monkeypatch.setenv(var, f"key-from-{var}")
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "--dry-run")

    assert r.code == 0, r.err
    sent = {
        s.header("x-goog-api-key") or s.header("x-api-key") or s.header("Authorization") for s in server.seen
    }
    assert sent and all(f"key-from-{var}" in v for v in sent), sent
    listed = run_cli("config", "list").out
    assert f"(from env:{var})" in listed


def test_gemini_api_key_wins_over_google_api_key(
    run_cli: Callable[..., Result],
    cli_env: Path,
    standin: Callable[..., StandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = standin("gemini")  # stand-in for the Gemini API
    configure(run_cli, llm_provider="gemini", llm_base_url=server.base_url)
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-key")
    r = run_cli("persona", "generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 0, r.err
    assert {s.header("x-goog-api-key") for s in server.seen} == {"gemini-key"}


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("openai", "OpenAI API key not set. Set OPENAI_API_KEY or run: dorgu config set llm.api_key <key>"),
        (
            "anthropic",
            "Anthropic API key not set. Set ANTHROPIC_API_KEY or run: dorgu config set llm.api_key <key>",
        ),
        (
            "gemini",
            "Gemini API key not set. Set GEMINI_API_KEY (or GOOGLE_API_KEY) or run: "
            "dorgu config set llm.api_key <key>",
        ),
    ],
)
def test_no_key_falls_back_with_the_go_tools_message(
    provider: str, message: str, run_cli: Callable[..., Result], cli_env: Path
) -> None:
    app = copy_app("flask", cli_env)
    plain = run_cli("generate", str(app), "--dry-run")
    r = run_cli("generate", str(app), "--dry-run", "--llm-provider", provider)
    assert r.code == 0, r.err
    assert f"Warning: LLM analysis failed, using basic analysis: {message}" in r.err
    assert r.out == plain.out  # the deterministic files


def test_ollama_is_found_through_ollama_host(
    run_cli: Callable[..., Result],
    cli_env: Path,
    standin: Callable[..., StandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = standin("ollama")  # stand-in for an Ollama server (none can run here)
    configure(run_cli, llm_provider="ollama")
    monkeypatch.setenv(
        "OLLAMA_HOST", server.root.removeprefix("http://")
    )  # host:port, as Ollama users set it
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 0, r.err
    assert [s.path for s in server.seen] == ["/api/chat", "/api/chat"]
    assert "Written by the stand-in model" in r.out


# ------------------------------------------------------------------------------------------- proposals


def test_proposals_that_do_not_hold_are_rejected_with_warnings(
    run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    """An unexposed port, a probe path no route serves with GET (flask's /hooks/health is POST only) and
    limits above the workspace's api profile are each dropped with a warning; the files stay as without
    an LLM."""
    reply = {
        "ports": [{"port": 9999, "protocol": "TCP", "purpose": "admin"}],
        "health_check": {"path": "/hooks/health", "port": 5000},
        "resources": {"limits": {"cpu": "500m", "memory": "768Mi"}},
    }
    server = standin("openai", Script(analysis=json.dumps(reply)))  # stand-in for the OpenAI API
    profile = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    (cli_env / ".dorgu.yaml").write_text(yaml.safe_dump({"resources": {"profiles": {"api": profile}}}))
    app = copy_app("flask", cli_env)
    plain = run_cli("generate", str(app), "--dry-run", "--skip-persona")
    configure(run_cli, llm_provider="openai", llm_api_key=KEY, llm_base_url=server.base_url)

    r = run_cli("generate", str(app), "--dry-run", "--skip-persona")

    assert r.code == 0, r.err
    assert len(server.seen) == 1  # --skip-persona: no PERSONA.md question
    rejected = [line for line in r.err.splitlines() if "LLM proposal rejected" in line]
    assert rejected == [
        "Warning: LLM proposal rejected (openai): port 9999 is not exposed by the Dockerfile (exposed: 5000)",
        "Warning: LLM proposal rejected (openai): probe path /hooks/health: no route the flask route "
        "finder found serves GET /hooks/health",
        "Warning: LLM proposal rejected (openai): resources.limits.memory 768Mi is above the api profile's "
        "limit 512Mi",
    ], r.err
    assert r.out == plain.out


def test_proposals_that_hold_are_taken(
    run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    reply = {
        "type": "api",
        "ports": [{"port": 5000, "protocol": "TCP", "purpose": "orders"}],
        "health_check": {
            "path": "/api/v1/health",
            "readiness_path": "/api/v1/ready",
            "port": 5000,
            "initial_delay_seconds": 20,
            "period_seconds": 15,
        },
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "768Mi"}},
        "scaling": {"min_replicas": 3, "max_replicas": 6, "target_cpu_percent": 60},
    }
    server = standin("anthropic", Script(analysis="Here you go:\n```json\n" + json.dumps(reply) + "\n```"))
    configure(run_cli, llm_provider="anthropic", llm_api_key=KEY, llm_base_url=server.base_url)
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "-o", "k8s", "--skip-persona")

    assert r.code == 0, r.err
    assert "rejected" not in r.err and "failed" not in r.err, r.err
    assert "liveness   GET /api/v1/health (port 5000) from shop/api.py:" in r.out
    assert "proposed by the LLM and served by that route" in r.out
    dep = yaml.safe_load((cli_env / "k8s" / "deployment.yaml").read_text())
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["initialDelaySeconds"] == 20
    assert container["livenessProbe"]["periodSeconds"] == 15
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1000m", "memory": "768Mi"},
    }
    assert dep["spec"]["replicas"] == 3
    hpa = yaml.safe_load((cli_env / "k8s" / "hpa.yaml").read_text())
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60


def test_the_app_config_wins_over_every_proposal(
    run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    reply = {
        "type": "worker",
        "description": "not the owners' words",
        "resources": {"limits": {"memory": "768Mi"}},
        "scaling": {"min_replicas": 4},
    }
    server = standin("ollama", Script(analysis=json.dumps(reply)))  # stand-in for an Ollama server
    configure(run_cli, llm_provider="ollama", llm_base_url=server.root)
    app = copy_app("flask", cli_env)
    (app / ".dorgu.yaml").write_text(
        yaml.safe_dump(
            {
                "app": {"type": "api", "description": "The owners' words."},
                "resources": {"limits": {"memory": "640Mi"}},
                "scaling": {"min_replicas": 2},
            }
        )
    )
    r = run_cli("generate", str(app), "-o", "k8s")
    assert r.code == 0, r.err
    assert server.seen
    persona = yaml.safe_load((cli_env / "k8s" / "persona.yaml").read_text())
    assert persona["spec"]["type"] == "api"
    dep = yaml.safe_load((cli_env / "k8s" / "deployment.yaml").read_text())
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "640Mi"
    assert dep["spec"]["replicas"] == 2


# ------------------------------------------------------------------------------------------- failures


def _assistant(provider: str, server: StandIn, sleeps: list[float], *, timeout_s: float = 30.0) -> Assistant:
    settings = ProviderSettings(
        info=PROVIDERS[provider], model=MODEL, api_key=KEY, base_url=server.base_url, timeout_s=timeout_s
    )
    return Assistant(make_client(settings), policy=RetryPolicy(attempts=3), sleep=sleeps.append)


def _enhance(assistant: Assistant, app: Path) -> tuple[bytes, bytes, list[str]]:
    analysis = analyze(app, app_config=AppConfig())
    before = msgspec.json.encode(analysis)
    warnings: list[str] = []
    assistant.enhance(
        analysis,
        app_dir=app,
        app_config=AppConfig(),
        profile_for=lambda name: profile_for(WorkspaceConfig(), name),
        warn=warnings.append,
    )
    return before, msgspec.json.encode(analysis), warnings


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_5xx_is_retried_with_backoff_then_falls_back(
    provider: str, tmp_path: Path, standin: Callable[..., StandIn]
) -> None:
    server = standin(provider, Script(failures=[500, 503, 502]))  # stand-in: a real outage cannot be staged
    sleeps: list[float] = []
    before, after, warnings = _enhance(_assistant(provider, server, sleeps), copy_app("flask", tmp_path))
    assert len(server.seen) == 3
    assert sleeps == [1.0, 2.0]  # exponential backoff, on the injected sleep
    title = PROVIDERS[provider].title
    assert warnings == [
        f"LLM analysis failed, using basic analysis: {provider}: {title} API error (status 502): "
        + warnings[0].split("(status 502): ", 1)[1]
    ]
    assert warnings[0].endswith("(after 3 attempts)")
    assert after == before  # the basic analysis, untouched


def test_a_transient_failure_then_an_answer_is_used(tmp_path: Path, standin: Callable[..., StandIn]) -> None:
    server = standin("gemini", Script(failures=[429]))  # stand-in for the Gemini API
    sleeps: list[float] = []
    _before, after, warnings = _enhance(_assistant("gemini", server, sleeps), copy_app("flask", tmp_path))
    assert warnings == [] and sleeps == [1.0] and len(server.seen) == 2
    assert json.loads(after)["description"] == "An order API for the shop."


def test_a_garbage_reply_is_asked_again_then_falls_back(
    tmp_path: Path, standin: Callable[..., StandIn]
) -> None:
    server = standin("openai", Script(failures=["garbage", "garbage", "garbage"]))  # stand-in for OpenAI
    sleeps: list[float] = []
    before, after, warnings = _enhance(_assistant("openai", server, sleeps), copy_app("flask", tmp_path))
    assert len(server.seen) == 3 and sleeps == [1.0, 2.0]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "LLM analysis failed, using basic analysis: openai: the reply is not a JSON"
    )
    assert after == before


def test_a_timeout_is_retried_then_falls_back(tmp_path: Path, standin: Callable[..., StandIn]) -> None:
    # the stand-in stalls longer than the client's timeout (a real provider cannot be made to hang)
    server = standin("ollama", Script(failures=["stall", "stall", "stall"]))
    sleeps: list[float] = []
    assistant = _assistant("ollama", server, sleeps, timeout_s=0.5)
    before, after, warnings = _enhance(assistant, copy_app("flask", tmp_path))
    assert len(server.seen) == 3 and sleeps == [1.0, 2.0]
    assert warnings == [
        f"LLM analysis failed, using basic analysis: ollama: no reply within 0.5s from {server.root} "
        "(after 3 attempts)"
    ]
    assert after == before


def test_a_client_error_is_not_retried(tmp_path: Path, standin: Callable[..., StandIn]) -> None:
    server = standin(
        "anthropic", Script(failures=[401])
    )  # stand-in: a wrong key, answered as Anthropic would
    sleeps: list[float] = []
    _before, _after, warnings = _enhance(_assistant("anthropic", server, sleeps), copy_app("flask", tmp_path))
    assert len(server.seen) == 1 and sleeps == []
    assert "Anthropic API error (status 401)" in warnings[0] and "attempts" not in warnings[0]


def test_on_every_failure_generate_goes_on_deterministically(
    run_cli: Callable[..., Result],
    cli_env: Path,
    standin: Callable[..., StandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli import pipeline

    server = standin("openai", Script(failures=[500] * 6))  # stand-in: an OpenAI-compatible server in trouble
    sleeps: list[float] = []
    monkeypatch.setattr(pipeline, "LLM_SLEEP", sleeps.append)
    app = copy_app("flask", cli_env)
    plain = tmp = cli_env / "plain"
    tmp.mkdir()
    os.chdir(plain)
    assert run_cli("generate", str(app), "-o", "k8s").code == 0
    configure(run_cli, llm_provider="openai", llm_api_key=KEY, llm_base_url=server.base_url)
    llm_dir = cli_env / "llm"
    llm_dir.mkdir()
    os.chdir(llm_dir)

    r = run_cli("generate", str(app), "-o", "k8s")

    assert r.code == 0, r.err
    assert len(server.seen) == 6 and sleeps == [1.0, 2.0, 1.0, 2.0]  # 3 tries for each question
    assert (
        "Warning: LLM analysis failed, using basic analysis: openai: OpenAI API error (status 500)" in r.err
    )
    assert "Warning: LLM-written PERSONA.md failed, using the template: openai: OpenAI API error" in r.err
    assert tree(llm_dir) == tree(plain)  # byte for byte what generate writes without an LLM


# ------------------------------------------------------------------------------------------- PERSONA.md


def test_persona_md_is_llm_written_with_a_provider_and_templated_without(
    run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    app = copy_app("flask", cli_env)
    r = run_cli("generate", str(app), "-o", "k8s")
    assert r.code == 0, r.err
    templated = body_of(cli_env / "PERSONA.md")
    assert templated.startswith("# flask\n\n## Overview\n\nA containerized api application\n")
    assert "## Technical Stack" in templated and "- **Framework:** flask" in templated

    # the stand-in answers as a model would, fenced; the fence is removed
    server = standin("gemini", Script(persona="```markdown\n" + PERSONA_MARKDOWN + "```\n"))
    configure(run_cli, llm_provider="gemini", llm_api_key=KEY, llm_base_url=server.base_url)
    r = run_cli("generate", str(app), "-o", "k8s")
    assert r.code == 0, r.err
    assert body_of(cli_env / "PERSONA.md") == PERSONA_MARKDOWN
    asked = server.seen[1].text()
    assert "technical writer" in asked and "## Technical Stack" in asked  # the template's facts were given


def test_an_unusable_persona_reply_keeps_the_template(
    run_cli: Callable[..., Result], cli_env: Path, standin: Callable[..., StandIn]
) -> None:
    server = standin("anthropic", Script(persona="Sure! Here is a persona."))  # stand-in for Anthropic
    app = copy_app("flask", cli_env)
    assert run_cli("generate", str(app), "-o", "k8s").code == 0
    templated = body_of(cli_env / "PERSONA.md")
    configure(run_cli, llm_provider="anthropic", llm_api_key=KEY, llm_base_url=server.base_url)
    r = run_cli("generate", str(app), "-o", "k8s", "--force")
    assert r.code == 0, r.err
    assert (
        "Warning: LLM-written PERSONA.md failed, using the template: anthropic: the reply is not a Markdown"
        in (r.err)
    )
    assert len(server.seen) == 4  # the analysis, then PERSONA.md asked three times
    persona = body_of(cli_env / "PERSONA.md")
    assert persona.replace("An order API for the shop.", "A containerized api application") == templated


# ------------------------------------------------------------------------------------------- libraries


def test_the_deterministic_path_imports_no_llm_library(cli_env: Path) -> None:
    app = copy_app("flask", cli_env)
    code = (
        "import sys\nfrom cli.main import main\n"
        f"assert main(['generate', {str(app)!r}, '--dry-run']) == 0\n"
        "libs = ('openai', 'anthropic', 'google.genai', 'ollama', 'httpx')\n"
        "print(sorted(m for m in libs if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=cli_env, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_library_falls_back_naming_the_extra(
    run_cli: Callable[..., Result], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)  # as if dorgu[llm] were not installed
    configure(run_cli, llm_provider="anthropic", llm_api_key=KEY)
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 0, r.err
    assert (
        "Warning: LLM analysis failed, using basic analysis: the anthropic provider needs the anthropic "
        "package (pip install 'dorgu[llm]')" in r.err
    )


def test_an_unknown_provider_is_an_input_error(run_cli: Callable[..., Result], cli_env: Path) -> None:
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run", "--llm-provider", "watson")
    assert r.code == 2
    assert "unknown LLM provider: watson (supported: openai, anthropic, gemini, ollama)" in r.err
    assert not (cli_env / "k8s").exists()


def test_the_global_key_and_endpoint_stay_with_the_global_provider(
    run_cli: Callable[..., Result],
    cli_env: Path,
    standin: Callable[..., StandIn],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A workspace (or flag) choosing another provider than the global one does not get the global key: an
    OpenAI key is never sent to another provider. Its own variable still works."""
    mine = standin("openai")  # stand-in for the user's OpenAI-compatible endpoint
    configure(run_cli, llm_provider="openai", llm_api_key=KEY, llm_base_url=mine.base_url)
    (cli_env / ".dorgu.yaml").write_text(yaml.safe_dump({"llm": {"provider": "anthropic"}}))
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "--dry-run")

    assert r.code == 0, r.err
    assert mine.seen == []
    assert "Anthropic API key not set. Set ANTHROPIC_API_KEY" in r.err

    theirs = standin("anthropic")  # stand-in for the Anthropic API
    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-key")
    monkeypatch.setenv("DORGU_LLM_BASE_URL", theirs.base_url)
    r = run_cli("generate", str(app), "--dry-run")
    assert r.code == 0, r.err
    assert mine.seen == [] and len(theirs.seen) == 2
    assert all(KEY not in s.text() + json.dumps(s.headers) for s in theirs.seen)
