"""The checks an LLM's proposals must pass (cli.analyzer.llm.proposal), on the fixture apps' real analyses."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from cli.analyzer import analyze
from cli.analyzer.llm.clients import LLMError
from cli.analyzer.llm.proposal import apply
from cli.analyzer.llm.reply import json_object, markdown
from cli.analyzer.model import AppAnalysis
from cli.settings import AppConfig, WorkspaceConfig, profile_for
from tests.cli.conftest import copy_app


def _run(app: Path, reply: dict, config: AppConfig | None = None) -> tuple[AppAnalysis, list[str], list[str]]:
    cfg = config or AppConfig()
    analysis = analyze(app, app_config=cfg)
    out = apply(
        analysis, reply, app_dir=app, app_config=cfg, profile_for=lambda n: profile_for(WorkspaceConfig(), n)
    )
    return analysis, out.applied, out.rejected


@pytest.fixture
def flask(tmp_path: Path) -> Path:
    return copy_app("flask", tmp_path)


def test_requests_above_limits_are_rejected(flask: Path) -> None:
    analysis, applied, rejected = _run(
        flask, {"resources": {"requests": {"memory": "900Mi"}, "limits": {"memory": "800Mi"}}}
    )
    assert rejected == ["resources: requests.memory 900Mi is above limits.memory 800Mi"]
    assert applied == [] and analysis.resources is None


def test_a_quantity_that_does_not_parse_is_rejected(flask: Path) -> None:
    _a, applied, rejected = _run(flask, {"resources": {"limits": {"cpu": "lots"}}})
    assert (
        applied == []
        and len(rejected) == 1
        and rejected[0].startswith("resources.limits.cpu 'lots' is not a quantity")
    )


@pytest.mark.parametrize(
    ("scaling", "why"),
    [
        ({"min_replicas": 0}, "scaling replicas min 0 / max 10 are not 1 <= min <= max <= 100"),
        (
            {"min_replicas": 5, "max_replicas": 3},
            "scaling replicas min 5 / max 3 are not 1 <= min <= max <= 100",
        ),
        ({"max_replicas": 500}, "scaling replicas min 2 / max 500 are not 1 <= min <= max <= 100"),
        ({"target_cpu_percent": 100}, "scaling.target_cpu_percent 100 is outside 10-95"),
        ({"min_replicas": "three"}, "scaling.min_replicas 'three' is not a whole number"),
    ],
)
def test_scaling_out_of_range_is_rejected(flask: Path, scaling: dict, why: str) -> None:
    analysis, applied, rejected = _run(flask, {"scaling": scaling})
    assert rejected == [why] and applied == []
    assert (analysis.scaling.min_replicas, analysis.scaling.max_replicas) == (2, 10)


def test_a_type_outside_the_crd_enum_is_rejected(flask: Path) -> None:
    analysis, _applied, rejected = _run(flask, {"type": "microservice", "description": "  An   API.  "})
    assert rejected == ["type 'microservice' is not one of api, web, worker, cron, daemon"]
    assert analysis.type == "api" and analysis.description == "An API."


def test_a_probe_for_an_app_without_a_route_finder_is_rejected(tmp_path: Path) -> None:
    app = tmp_path / "sinatra"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM ruby:3\nEXPOSE 4567\n")
    (app / "app.rb").write_text("get '/health' do\n  'ok'\nend\n")
    analysis, _applied, rejected = _run(app, {"health_check": {"path": "/health", "port": 4567}})
    assert len(rejected) == 1 and rejected[0].startswith("probe path /health: dorgu has no route finder for")
    assert analysis.health_check is None


def test_a_probe_on_an_unexposed_port_is_rejected(flask: Path) -> None:
    before = analyze(flask, app_config=AppConfig()).health_check
    analysis, _applied, rejected = _run(flask, {"health_check": {"path": "/api/v1/health", "port": 8080}})
    assert rejected == ["probe port 8080 is not exposed by the Dockerfile (exposed: 5000)"]
    assert msgspec.json.encode(analysis.health_check) == msgspec.json.encode(before)


def test_an_accepted_probe_of_a_compose_app_names_its_file_from_the_app_directory(tmp_path: Path) -> None:
    """compose-app's code lives in web/ (the compose build context); its fastify app serves GET /status."""
    app = copy_app("compose-app", tmp_path)
    analysis, applied, rejected = _run(
        app, {"health_check": {"path": "/status", "initial_delay_seconds": 30}}
    )
    assert rejected == [] and applied == ["health_check"]
    hc = analysis.health_check
    assert hc is not None and hc.source == "llm" and hc.initial_delay_seconds == 30
    assert hc.origin.startswith("web/") and (app / hc.origin.split(":")[0]).is_file()


def test_reply_reading() -> None:
    assert json_object('Sure: {"a": 1} and {"b": 2}') == {"a": 1}
    assert json_object('```json\n[1]\n{"type": "api"}\n```') == {"type": "api"}
    with pytest.raises(LLMError) as e:
        json_object("no json here")
    assert e.value.transient
    assert markdown("```md\n# t\n\nbody\n```") == "# t\n\nbody\n"
    with pytest.raises(LLMError):
        markdown("Here is your file: # t")


def test_a_failure_inside_the_checks_leaves_the_analysis_as_it_was(
    flask: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The route finder failing mid-check (forced here: the fixture apps never make it fail) is a warning,
    and nothing of the reply — not even its valid description — is half-applied."""
    from cli.analyzer.llm import Assistant, proposal

    class Canned:
        settings = type("S", (), {"info": type("I", (), {"name": "openai"})()})()

        def complete(self, **_kw: object) -> str:
            return '{"description": "New words.", "health_check": {"path": "/api/v1/health"}}'

    def broken(*_a: object, **_kw: object) -> list:
        raise OSError("disk gone")

    monkeypatch.setattr(proposal, "find_routes", broken)
    analysis = analyze(flask, app_config=AppConfig())
    before = msgspec.json.encode(analysis)
    warnings: list[str] = []
    Assistant(Canned(), sleep=lambda _s: None).enhance(  # type: ignore[arg-type]
        analysis,
        app_dir=flask,
        app_config=AppConfig(),
        profile_for=lambda n: profile_for(WorkspaceConfig(), n),
        warn=warnings.append,
    )
    assert warnings == [
        "LLM analysis failed, using basic analysis: openai: the reply could not be checked: "
        "OSError: disk gone"
    ]
    assert msgspec.json.encode(analysis) == before
