"""Golden outputs of `dorgu generate` for the fixture corpus: byte-identical on every run, and right on their
own, whatever the comparison says — each generated object is accepted by a real API server (dry-run), the
objects fit together (selectors, ports, backends, scale targets, the persona's Deployment), and the persona
rules find nothing in the generated Deployment (see tests/cli/manifest_checks.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dorgu.envtest import ApiError, HarnessClient
from tests.cli import manifest_checks as checks
from tests.cli.conftest import FIXTURE_APPS, GOLDEN, copy_app, tree
from tests.cli.manifest_checks import JSON

UPDATE = os.environ.get("DORGU_UPDATE_GOLDEN") == "1"
NAMESPACE = "demo"
"""The namespace the goldens are generated for; on the test plane it is replaced by the test's namespace."""
ARGO_NAMESPACE = "argocd"
"""Where the generated Argo CD Application lives (the workspace default); created on the test plane."""


@pytest.fixture(scope="module")
def argo_crd(kube: HarnessClient) -> None:
    """The real Argo CD Application CRD (the local 1.20 server does not serve Applications otherwise) and its
    namespace, so the generated Application is dry-run like every other object."""
    from tests.controllers.test_argocd import crd_installed, install_argo_crd

    if not crd_installed(kube):
        install_argo_crd(kube)
    try:
        kube.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGO_NAMESPACE}},
        )
    except ApiError as e:
        assert e.code == 409, e


def _generate(run_cli, app_dir: Path, out: Path) -> dict[str, bytes]:
    out.mkdir()
    cwd = Path.cwd()
    os.chdir(out)
    try:
        r = run_cli("generate", str(app_dir), "-o", "k8s", "--kube-version", "1.20", "--namespace", NAMESPACE)
    finally:
        os.chdir(cwd)
    assert r.code == 0, r.err
    return tree(out)


@pytest.mark.parametrize("app", FIXTURE_APPS)
def test_generate_matches_golden(
    app: str, run_cli, tmp_path: Path, kube: HarnessClient, namespace: str, argo_crd: None
) -> None:
    src = copy_app(app, tmp_path / "src")
    first = _generate(run_cli, src, tmp_path / "out1")
    second = _generate(run_cli, src, tmp_path / "out2")
    assert first == second, "two runs on the same input must give byte-identical files"
    golden_dir = GOLDEN / app.replace("/", "__")
    if UPDATE:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, data in first.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_bytes(data)
    assert golden_dir.is_dir(), f"no golden for {app}; run with DORGU_UPDATE_GOLDEN=1"
    golden = tree(golden_dir)
    # The golden files must be right on their own (checked first, so an update cannot bless a broken output)…
    _independent_checks(kube, namespace, golden, PROJECT_KINDS.get(app, KINDS))
    # …and the generator must still produce exactly them.
    assert sorted(first) == sorted(golden)
    for rel in golden:
        assert first[rel].decode() == golden[rel].decode(), rel


def _independent_checks(
    kube: HarnessClient, namespace: str, files: dict[str, bytes], kinds: tuple[str, ...] | None = None
) -> None:
    objs = checks.load_manifests(files)
    if kinds is not None:
        assert sorted(o["kind"] for o in objs) == sorted(kinds)
    assert checks.namespace_problems(objs, NAMESPACE) == []
    # The server's answers (defaults applied) are what a cluster would hold; a rejection raises ApiError.
    served = checks.dry_run(kube, objs, {NAMESPACE: namespace})
    assert [o["kind"] for o in served] == [o["kind"] for o in objs]
    assert checks.coherence_problems(served) == []
    # Pass: once rolled out, the controller would write phase Active, and the rules find nothing at all.
    assert checks.rule_problems(served) == []


# --------------------------------------------------------------------------- the checks can fail

KINDS = ("Application", "ApplicationPersona", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Service")
PROJECT_KINDS = {
    # compose-app: web and api built from source (each with an Ingress: they publish ports), redis as a
    # Deployment, postgres with its named volume as a StatefulSet; one Argo CD Application
    "compose-app": (
        "Application",
        *("ApplicationPersona",) * 3,
        *("Deployment",) * 3,
        *("HorizontalPodAutoscaler",) * 2,
        *("Ingress",) * 2,
        *("Service",) * 4,
        "StatefulSet",
    ),
}
Mutation = Callable[[dict[str, JSON]], None]


def _container(o: dict[str, JSON]) -> JSON:
    return o["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def _backend(o: dict[str, JSON]) -> JSON:
    return o["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]


def _set(path: str, value: Any) -> Mutation:
    """Set ``Kind.a.b.0.c`` to ``value``."""

    def mutate(o: dict[str, JSON]) -> None:
        kind, *keys = path.split(".")
        node: Any = o[kind]
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node[k]
        node[keys[-1]] = value

    return mutate


BROKEN: dict[str, tuple[Mutation, str, str]] = {
    # name: (how the flask golden is broken, which check must object, a fragment of its complaint)
    "service selector": (
        _set("Service.spec.selector", {"app.kubernetes.io/name": "flask-web"}),
        "coherence",
        "selects no Deployment's pods",
    ),
    "deployment selector": (
        _set("Deployment.spec.selector.matchLabels", {"app.kubernetes.io/name": "other"}),
        "coherence",
        "does not select its own pod template",
    ),
    "containerPort": (
        lambda o: _container(o)["ports"][0].update(containerPort=5001),
        "coherence",
        "targetPort 5000/TCP is not a containerPort",
    ),
    "named targetPort": (
        _set("Service.spec.ports.0.targetPort", "http"),
        "coherence",
        "targetPort 'http'/TCP is not a containerPort",
    ),
    "ingress service": (lambda o: _backend(o).update(name="flask-svc"), "coherence", "is not generated"),
    "ingress port": (
        lambda o: _backend(o).update(port={"number": 80}),
        "coherence",
        "backend port {'number': 80} is not a port of Service",
    ),
    "hpa target": (
        _set("HorizontalPodAutoscaler.spec.scaleTargetRef.name", "flask-v2"),
        "coherence",
        "names no",
    ),
    "hpa without requests": (
        lambda o: _container(o)["resources"]["requests"].pop("cpu"),
        "coherence",
        "cpu utilization needs a cpu request",
    ),
    "hpa bounds": (_set("HorizontalPodAutoscaler.spec.maxReplicas", 20), "coherence", "persona says 2..10"),
    "deployment app label": (
        _set("Deployment.metadata.labels", {"app.kubernetes.io/name": "flask-web", "app": "flask"}),
        "coherence",
        "the controller would leave it Pending",
    ),
    "persona namespace": (
        _set("ApplicationPersona.metadata.namespace", "prod"),
        "namespace",
        "expected 'demo'",
    ),
    "persona health port": (
        _set("ApplicationPersona.spec.health.port", 8080),
        "coherence",
        "health.port 8080",
    ),
    "persona limit": (
        _set("ApplicationPersona.spec.resources.limits.cpu", "500m"),
        "rules",
        "R-1 warning on flask: Container CPU limit (1) exceeds persona limit (500m)",
    ),
    "pod runs as root": (
        _set("Deployment.spec.template.spec.securityContext.runAsNonRoot", False),
        "rules",
        "phase would be Degraded, not Active",
    ),
    "ingress pathType": (
        _set("Ingress.spec.rules.0.http.paths.0.pathType", "Sometimes"),
        "dry-run",
        "pathType",
    ),
    "persona type": (_set("ApplicationPersona.spec.type", "robot"), "dry-run", "spec.type"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_checks_object_to_a_broken_golden(
    case: str, kube: HarnessClient, namespace: str, argo_crd: None
) -> None:
    """Each check finds a fault put into a copy of a golden output (the golden files stay as they are)."""
    mutate, check, fragment = BROKEN[case]
    by_kind = {o["kind"]: o for o in checks.load_manifests(tree(GOLDEN / "flask"))}
    assert sorted(by_kind) == sorted(KINDS)
    mutate(by_kind)
    objs = list(by_kind.values())
    if check == "dry-run":
        with pytest.raises(ApiError) as e:
            checks.dry_run(kube, objs, {NAMESPACE: namespace})
        assert e.value.code == 422 and fragment in e.value.message, e.value.message
        return
    problems = {
        "namespace": lambda: checks.namespace_problems(objs, NAMESPACE),
        "coherence": lambda: checks.coherence_problems(objs),
        "rules": lambda: checks.rule_problems(objs),
    }[check]()
    assert any(fragment in p for p in problems), problems


def test_dry_run_prints_the_same_files(run_cli, tmp_path: Path) -> None:
    src = copy_app("flask", tmp_path / "src")
    r = run_cli("generate", str(src), "--dry-run", "--kube-version", "1.20", "--namespace", "demo")
    assert r.code == 0
    assert "--- deployment.yaml ---" in r.out and "--- ../PERSONA.md ---" in r.out
    # As in Go: the validation report on stdout, before the files; nothing of it on stderr.
    assert "Validation passed" in r.out and r.out.index("Validation") < r.out.index("--- deployment.yaml ---")
    assert "Validation" not in r.err
    assert not Path("k8s").exists()
