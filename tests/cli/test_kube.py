"""Against the session's real control plane (Kubernetes 1.20): server-side dry-run of everything
`dorgu generate` writes, and `dorgu persona apply`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from dorgu.envtest import ControlPlane, HarnessClient
from tests.cli.conftest import FIXTURE_APPS, copy_app

SKIP_KINDS: set[str] = set()


@pytest.fixture(scope="module")
def argo_crd(kube: HarnessClient) -> None:
    """The real Argo CD Application CRD, so the generated Application is dry-run too."""
    from dorgu.envtest import ApiError
    from tests.controllers.test_argocd import crd_installed, install_argo_crd

    if not crd_installed(kube):
        install_argo_crd(kube)
    try:
        kube.post(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}
        )
    except ApiError as e:
        assert e.code == 409


@pytest.fixture
def kubeconfig(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, cli_env: Path) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    return control_plane.kubeconfig


@pytest.mark.parametrize("app", FIXTURE_APPS)
def test_generated_files_pass_server_side_dry_run(
    app, run_cli, kube: HarnessClient, namespace: str, kubeconfig, tmp_path, argo_crd
):
    src = copy_app(app, tmp_path / "src")
    # no --kube-version: the HPA's API version comes from discovery (autoscaling/v2beta2 on 1.20)
    r = run_cli("generate", str(src), "-o", "k8s", "--namespace", namespace)
    assert r.code == 0, r.err
    checked = []
    for path in sorted(Path("k8s").rglob("*.yaml")):
        obj = yaml.safe_load(path.read_text())
        if obj["kind"] in SKIP_KINDS:
            continue
        if obj["kind"] == "HorizontalPodAutoscaler":
            assert obj["apiVersion"] == "autoscaling/v2beta2"
        kube.request(
            "PATCH",
            kube.path_of(obj),
            body=obj,
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "dorgu-test", "dryRun": "All"},
        )
        checked.append(obj["kind"])
    assert "Deployment" in checked and "ApplicationPersona" in checked and "Application" in checked


def _persona(kube: HarnessClient, ns: str, name: str):
    return kube.get(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/{name}")


def test_persona_apply_creates_then_updates(
    run_cli, kube: HarnessClient, namespace: str, kubeconfig, tmp_path
):
    src = copy_app("flask", tmp_path / "src")
    r = run_cli("persona", "apply", str(src), "-n", namespace)
    assert r.code == 0, r.err
    assert f"ApplicationPersona {namespace}/flask created" in r.out
    live = _persona(kube, namespace, "flask")
    assert live["spec"]["type"] == "api"
    assert any(m["manager"] == "dorgu-cli" for m in live["metadata"]["managedFields"])

    (src / ".dorgu.yaml").write_text(
        "app:\n  tier: critical\nscaling:\n  min_replicas: 4\n  max_replicas: 8\n"
    )
    r = run_cli("persona", "apply", str(src), "-n", namespace, "--dry-run=server")
    assert r.code == 0, r.err
    assert "+  tier: critical" in r.out and "would be configured" in r.out
    assert _persona(kube, namespace, "flask")["spec"]["tier"] == "standard"  # dry run changed nothing

    r = run_cli("persona", "apply", str(src), "-n", namespace)
    assert r.code == 0, r.err
    assert "configured" in r.out
    spec = _persona(kube, namespace, "flask")["spec"]
    assert (spec["tier"], spec["scaling"]["minReplicas"], spec["scaling"]["maxReplicas"]) == (
        "critical",
        4,
        8,
    )

    r = run_cli("persona", "apply", str(src), "-n", namespace)
    assert r.code == 0 and "unchanged" in r.out


def test_persona_apply_dry_run_creates_nothing(run_cli, kube, namespace, kubeconfig, tmp_path):
    src = copy_app("go-gin", tmp_path / "src")
    r = run_cli("persona", "apply", str(src), "-n", namespace, "--dry-run=server")
    assert r.code == 0, r.err
    assert "would be created" in r.out
    from dorgu.envtest.http import ApiError

    with pytest.raises(ApiError) as e:
        _persona(kube, namespace, "go-gin")
    assert e.value.code == 404


def test_persona_apply_to_missing_namespace_fails_clearly(run_cli, kube, kubeconfig, tmp_path):
    src = copy_app("flask", tmp_path / "src")
    ns = f"missing-{os.getpid()}"
    r = run_cli("persona", "apply", str(src), "-n", ns)
    assert r.code == 1
    assert f"Error: namespace '{ns}' does not exist" in r.err and "--create-namespace" in r.err


def test_persona_apply_creates_namespace_when_asked(run_cli, kube, kubeconfig, tmp_path):
    src = copy_app("rust-axum", tmp_path / "src")
    ns = f"created-{os.getpid()}"
    try:
        r = run_cli("persona", "apply", str(src), "-n", ns, "--create-namespace")
        assert r.code == 0, r.err
        assert _persona(kube, ns, "rust-axum")["spec"]["name"] == "rust-axum"
    finally:
        kube.delete(f"/api/v1/namespaces/{ns}")


def test_persona_apply_without_cluster_fails(run_cli, tmp_path, monkeypatch):
    src = copy_app("flask", tmp_path / "src")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope"))
    r = run_cli("persona", "apply", str(src))
    assert r.code == 1 and "Error: no kubeconfig" in r.err
