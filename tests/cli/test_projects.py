"""`dorgu generate` on multi-service and awkward projects (issue 18), fixtures in tests/fixtures/projects/:

* proxy-flask-mysql: an nginx proxy (image, port 80: root), a Flask back end built from its ``dev-envs``
  stage (compose ``build.target``) that inherits the builder stage's EXPOSE and USER, MySQL with a named
  volume (a StatefulSet) and an exec healthcheck;
* image-only: Prometheus + Grafana, nothing to build;
* wordpress-mysql: WordPress + MySQL, both root images with named volumes;
* react-rust-postgres: both built from their ``development`` stage (inheriting ``base``), dev bind mounts,
  a build-cache volume, postgres with a compose secret (``POSTGRES_PASSWORD_FILE``);
* udp-root: a Dockerfile with ``USER root``, UDP and TCP 53 and a port range.

For each: every generated object passes server-side dry-run on the real control plane, every Service
selects its workload's pods and targets a containerPort, and the persona rules (dorgu.domain, as the
controller and webhook run them) find nothing in each Deployment against its own persona."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from cli.analyzer.compose import compose_dependencies, parse_compose
from cli.analyzer.dockerfile import parse_dockerfile
from cli.analyzer.security import plan_security
from cli.errors import InputError
from dorgu.envtest import ApiError, HarnessClient
from tests.cli import manifest_checks as checks
from tests.cli.conftest import ROOT, copy_app, tree

PROJECTS = ROOT / "tests" / "fixtures" / "projects"
NAMESPACE = "demo"


@pytest.fixture(scope="module")
def argo_crd(kube: HarnessClient) -> None:
    from tests.controllers.test_argocd import crd_installed, install_argo_crd

    if not crd_installed(kube):
        install_argo_crd(kube)
    try:
        kube.post(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}
        )
    except ApiError as e:
        assert e.code == 409, e


def _generate(run_cli, app: Path, out: Path, *flags: str):
    out.mkdir()
    cwd = Path.cwd()
    os.chdir(out)
    try:
        r = run_cli(
            "generate", str(app), "-o", "k8s", "--kube-version", "1.20", "--namespace", NAMESPACE, *flags
        )
    finally:
        os.chdir(cwd)
    return r, tree(out)


def _checked(kube: HarnessClient, namespace: str, files: dict[str, bytes]) -> list[dict]:
    objs = checks.load_manifests(files)
    assert checks.namespace_problems(objs, NAMESPACE) == []
    served = checks.dry_run(kube, objs, {NAMESPACE: namespace})
    assert [o["kind"] for o in served] == [o["kind"] for o in objs]
    assert checks.coherence_problems(served) == []
    assert checks.rule_problems(served) == []
    for obj in objs:  # every Deployment has its own persona (StatefulSets have none: the controller
        if obj["kind"] == "Deployment":  # watches Deployments)
            name = obj["metadata"]["name"]
            assert any(o["kind"] == "ApplicationPersona" and o["spec"]["name"] == name for o in objs), name
    return objs


def _obj(files: dict[str, bytes], path: str) -> dict:
    return yaml.safe_load(files[path])


def _pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    "project", ["proxy-flask-mysql", "image-only", "wordpress-mysql", "react-rust-postgres", "udp-root"]
)
def test_projects_dry_run_coherent_and_deterministic(project, run_cli, tmp_path, kube, namespace, argo_crd):
    src = tmp_path / "src" / project
    shutil.copytree(PROJECTS / project, src)
    r1, first = _generate(run_cli, src, tmp_path / "out1")
    assert r1.code == 0, r1.err
    r2, second = _generate(run_cli, src, tmp_path / "out2")
    assert r2.code == 0, r2.err
    assert first == second, "two runs must give byte-identical files"
    _checked(kube, namespace, first)


def test_proxy_backend_database(run_cli, tmp_path):
    src = tmp_path / "src" / "proxy-flask-mysql"
    shutil.copytree(PROJECTS / "proxy-flask-mysql", src)
    r, files = _generate(run_cli, src, tmp_path / "out")
    assert r.code == 0, r.err
    # every service, its own directory; the database a StatefulSet with a claim template, no persona
    assert {p.split("/")[1] for p in files if p.startswith("k8s/") and "argocd" not in p} == {
        "proxy", "backend", "db"}  # fmt: skip
    backend = _obj(files, "k8s/backend/deployment.yaml")
    c = _pod(backend)["containers"][0]
    # the dev-envs target inherits the builder's EXPOSE 5000 and USER 1000 (a reset would lose both)
    assert [(p["containerPort"], p["protocol"]) for p in c["ports"]] == [(5000, "TCP")]
    assert _pod(backend)["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 5000}
    assert "k8s/backend/service.yaml" in files
    # dependencies point from the consumer: proxy → backend → db; the back end does not depend on its proxy
    deps = {
        name: [d["name"] for d in _obj(files, f"k8s/{name}/persona.yaml")["spec"].get("dependencies", [])]
        for name in ("proxy", "backend")
    }
    assert deps == {"proxy": ["backend"], "backend": ["db"]}
    db = _obj(files, "k8s/db/statefulset.yaml")
    assert db["kind"] == "StatefulSet" and db["spec"]["serviceName"] == "db"
    assert [t["metadata"]["name"] for t in db["spec"]["volumeClaimTemplates"]] == ["db-data"]
    assert _pod(db)["containers"][0]["livenessProbe"]["exec"]["command"] == [
        "mysqladmin", "ping", "-h", "127.0.0.1"]  # fmt: skip
    assert "k8s/db/persona.yaml" not in files
    # the claim is mounted through a sub-directory: mysql refuses a data directory holding lost+found
    mount = next(m for m in _pod(db)["containers"][0]["volumeMounts"] if m["name"] == "db-data")
    assert mount == {"name": "db-data", "mountPath": "/var/lib/mysql", "subPath": "db-data"}
    # nginx's default image runs as root on port 80: no forced non-root, and a warning naming the fix
    proxy = _obj(files, "k8s/proxy/deployment.yaml")
    assert _pod(proxy)["securityContext"]["runAsNonRoot"] is False
    assert _pod(proxy)["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    said = r.out + r.err
    assert "service proxy: runs as root" in said and "nginxinc/nginx-unprivileged" in said
    assert "bind mount ./proxy/default.conf" in r.err
    # one Application for the whole directory; one workflow building the back end's target only
    app = _obj(files, "k8s/argocd/application.yaml")
    assert app["metadata"]["name"] == "proxy-flask-mysql" and app["spec"]["source"]["directory"] == {
        "recurse": True,
        "exclude": "argocd/*",
    }
    wf = files[".github/workflows/deploy.yaml"].decode()
    assert "- service: backend" in wf and 'target: "dev-envs"' in wf and "service: proxy" not in wf
    assert "k8s/backend/deployment.yaml" in wf


def test_image_only_stack_says_what_it_did(run_cli, tmp_path):
    src = tmp_path / "src" / "image-only"
    shutil.copytree(PROJECTS / "image-only", src)
    r, files = _generate(run_cli, src, tmp_path / "out")
    assert r.code == 0, r.err
    assert "No service of docker-compose.yml builds from source" in r.out + r.err
    assert not any(p.startswith(".github/") for p in files), (
        "no CI job building a Dockerfile that is not there"
    )
    grafana = _obj(files, "k8s/grafana/deployment.yaml")
    c = _pod(grafana)["containers"][0]
    assert c["image"] == "grafana/grafana:11.1.0"
    # grafana runs as uid 472 with a read-only root; the path it writes is its PersistentVolumeClaim
    assert _pod(grafana)["securityContext"]["runAsUser"] == 472
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "grafana-data", "mountPath": "/var/lib/grafana"} in c["volumeMounts"]
    pvc = _obj(files, "k8s/grafana/pvc-grafana-data.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == "grafana-grafana-data"
    deps = _obj(files, "k8s/grafana/persona.yaml")["spec"]["dependencies"]
    assert [d["name"] for d in deps] == ["prometheus"]
    prom = _pod(_obj(files, "k8s/prometheus/deployment.yaml"))
    assert {"name": "prometheus", "mountPath": "/prometheus"} in prom["containers"][0]["volumeMounts"]


def test_root_image_with_udp_and_a_port_range(run_cli, tmp_path):
    src = tmp_path / "src" / "udp-root"
    shutil.copytree(PROJECTS / "udp-root", src)
    r, files = _generate(run_cli, src, tmp_path / "out")
    assert r.code == 0, r.err
    d = _obj(files, "k8s/deployment.yaml")
    ports = [(p["containerPort"], p["protocol"]) for p in _pod(d)["containers"][0]["ports"]]
    assert ports == [(53, "UDP"), (53, "TCP"), (7000, "TCP"), (7001, "TCP"), (7002, "TCP")]
    svc = _obj(files, "k8s/service.yaml")
    assert (53, "UDP") in [(p["targetPort"], p["protocol"]) for p in svc["spec"]["ports"]]
    assert _pod(d)["securityContext"]["runAsNonRoot"] is False
    said = r.out + r.err
    assert "runs as root (USER root)" in said and "listen on a port ≥ 1024 instead of 53" in said
    persona = _obj(files, "k8s/persona.yaml")
    assert persona["spec"]["policies"]["security"]["runAsNonRoot"] is False


def test_service_option_limits_output_to_one_service(run_cli, tmp_path):
    src = tmp_path / "src" / "proxy-flask-mysql"
    shutil.copytree(PROJECTS / "proxy-flask-mysql", src)
    r, files = _generate(run_cli, src, tmp_path / "out", "--service", "backend")
    assert r.code == 0, r.err
    d = _obj(files, "k8s/deployment.yaml")
    assert d["metadata"]["name"] == "backend"
    assert not any(p.startswith(("k8s/proxy", "k8s/db", "k8s/backend")) for p in files)
    r, _ = _generate(run_cli, src, tmp_path / "out2", "--service", "nope")
    assert (
        r.code == 2
        and "--service nope: no such service in compose.yaml (services: backend, db, proxy)" in r.err
    )


def test_unknown_build_target_is_an_input_error(run_cli, tmp_path, cli_env):
    src = tmp_path / "src" / "proxy-flask-mysql"
    shutil.copytree(PROJECTS / "proxy-flask-mysql", src)
    compose = src / "compose.yaml"
    compose.write_text(compose.read_text().replace("target: dev-envs", "target: debug"))
    r = run_cli("generate", str(src))
    assert r.code == 2
    assert "build target 'debug' is not a stage of this Dockerfile (stages: builder, dev-envs, prod)" in r.err
    assert list(cli_env.iterdir()) == []


def test_ci_and_argocd_paths_are_relative_to_the_git_root(run_cli, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    copy_app("flask", repo / "apps")
    (repo / "apps" / "flask").rename(repo / "apps" / "svc")
    monkeypatch.chdir(repo)
    r = run_cli("generate", "apps/svc", "-o", "apps/svc/k8s")
    assert r.code == 0, r.err
    assert not (repo / "apps" / ".github").exists() and not (repo / "apps" / "svc" / ".github").exists()
    wf = (repo / ".github" / "workflows" / "deploy.yaml").read_text()
    assert "context: apps/svc\n" in wf and "apps/svc/k8s/deployment.yaml" in wf
    app = yaml.safe_load((repo / "apps" / "svc" / "k8s" / "argocd" / "application.yaml").read_text())
    assert app["spec"]["source"]["path"] == "apps/svc/k8s"


def test_a_project_in_a_repository_builds_from_the_repository_root(run_cli, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    shutil.copytree(PROJECTS / "proxy-flask-mysql", repo / "shop")
    monkeypatch.chdir(repo)
    r = run_cli("generate", "shop", "-o", "shop/k8s")
    assert r.code == 0, r.err
    assert not (repo / "shop" / ".github").exists()
    wf = (repo / ".github" / "workflows" / "deploy.yaml").read_text()
    assert "context: shop/backend\n" in wf and "file: shop/backend/Dockerfile\n" in wf
    assert 'sed -i -E "s|^(\\s*image: ).*$|\\1${IMAGE}|" "shop/k8s/${SERVICE}/deployment.yaml"' in wf
    app = yaml.safe_load((repo / "shop" / "k8s" / "argocd" / "application.yaml").read_text())
    assert app["spec"]["source"]["path"] == "shop/k8s"


def test_paths_an_image_writes_get_a_volume_and_a_note(run_cli, tmp_path):
    src = tmp_path / "src" / "image-only"
    shutil.copytree(PROJECTS / "image-only", src)
    r, files = _generate(run_cli, src, tmp_path / "out")
    assert r.code == 0, r.err
    assert "prometheus: /prometheus is written by the image: an emptyDir is mounted there" in r.out + r.err
    prom = _pod(_obj(files, "k8s/prometheus/deployment.yaml"))
    assert {"name": "prometheus", "emptyDir": {}} in prom["volumes"]


def test_compose_expose_keeps_udp_and_names_must_stay_distinct(run_cli, tmp_path):
    c = parse_compose(
        "services:\n  dns:\n    image: coredns/coredns\n    expose: ['53/udp', '53', '9153']\n",
        path="compose.yaml",
        app_name="x",
    )
    assert (c.services[0].expose, c.services[0].expose_udp) == ([53, 9153], [53])
    app = tmp_path / "dup"
    app.mkdir()
    (app / "compose.yaml").write_text("services:\n  web_app:\n    image: a\n  web-app:\n    image: b\n")
    r = run_cli("generate", str(app))
    assert (
        r.code == 2 and "services 'web-app' and 'web_app' both become the Kubernetes name 'web-app'" in r.err
    )


def test_compose_secrets_are_mounted_from_secrets(run_cli, tmp_path):
    src = tmp_path / "src" / "react-rust-postgres"
    shutil.copytree(PROJECTS / "react-rust-postgres", src)
    r, files = _generate(run_cli, src, tmp_path / "out")
    assert r.code == 0, r.err
    db = _pod(_obj(files, "k8s/db/statefulset.yaml"))
    c = db["containers"][0]
    # the *_FILE variable is a path, not a secret value; the file comes from the Secret named like the
    # compose secret, and the output says how to create it from the compose secret's file
    assert {"name": "POSTGRES_PASSWORD_FILE", "value": "/run/secrets/db-password"} in c["env"]
    assert {
        "name": "secret-db-password",
        "mountPath": "/run/secrets/db-password",
        "subPath": "db-password",
        "readOnly": True,
    } in c["volumeMounts"]
    assert {"name": "secret-db-password", "secret": {"secretName": "db-password"}} in db["volumes"]
    assert "kubectl create secret generic db-password --from-file=db-password=db/password.txt" in r.out
    backend = _pod(_obj(files, "k8s/backend/deployment.yaml"))["containers"][0]
    assert [p["containerPort"] for p in backend["ports"]] == [8000]
    assert "backend/Dockerfile sets no USER: the pod runs as uid 65532" in r.out
    # the front end is built from its node `development` target, not the last (nginx) stage: no root
    frontend = _pod(_obj(files, "k8s/frontend/deployment.yaml"))
    assert frontend["securityContext"]["runAsNonRoot"] is True
    assert [p["containerPort"] for p in frontend["containers"][0]["ports"]] == [3000]
    assert "service frontend: runs as root" not in r.out


def test_volume_names_stay_unique_in_the_pod(run_cli, tmp_path, kube, namespace, argo_crd):
    app = tmp_path / "cache"
    app.mkdir()
    (app / "compose.yaml").write_text(
        "services:\n  cache:\n    image: grafana/grafana:11.1.0\n    ports: ['3000:3000']\n"
        "    volumes: ['tmp:/var/lib/grafana', '/scratch']\n  web:\n    image: nginxinc/nginx-unprivileged\n"
        "    ports: ['8080:8080']\nvolumes:\n  tmp: {}\n"
    )
    r, files = _generate(run_cli, app, tmp_path / "out")
    assert r.code == 0, r.err
    pod = _pod(_obj(files, "k8s/cache/deployment.yaml"))
    names = [v["name"] for v in pod["volumes"]]
    assert sorted(names) == ["tmp", "tmp-2", "vol-1"], names
    _checked(kube, namespace, files)


@pytest.mark.parametrize(
    ("compose", "message"),
    [
        (
            "services:\n  a:\n    build: ../elsewhere\n  b:\n    image: redis\n",
            "compose.yaml: service a: build context '../elsewhere' is outside ",
        ),
        (
            "services:\n  a:\n    build: missing\n  b:\n    image: redis\n",
            "compose.yaml: service a: build context 'missing' is not a directory",
        ),
        (
            "services:\n  a:\n    build: .\n  b:\n    image: redis\n",
            "compose.yaml: service a: build context '.' holds no Dockerfile",
        ),
        (
            "services:\n  a:\n    image: nginx\n    ports: [{published: 80}]\n",
            "compose.yaml: service a: bad port: a long-syntax port needs 'target'",
        ),
        (
            "services:\n  a:\n    image: nginx\n    volumes: [{type: volume, source: v}]\n",
            "compose.yaml: service a: volume {'type': 'volume', 'source': 'v'} needs an absolute container "
            "path",
        ),
    ],
    ids=[
        "context-outside",
        "context-missing",
        "no-dockerfile",
        "port-without-target",
        "volume-without-target",
    ],
)
def test_bad_compose_input_is_named_and_nothing_is_written(run_cli, tmp_path, cli_env, compose, message):
    app = tmp_path / "bad"
    app.mkdir()
    (app / "compose.yaml").write_text(compose)
    r = run_cli("generate", str(app))
    assert r.code == 2, r.err
    assert f"Error: {message}" in r.err
    assert list(cli_env.iterdir()) == []


# --------------------------------------------------------------------------- the readers


def test_stage_inheritance_and_target():
    text = (
        "FROM node:20 AS builder\nEXPOSE 3000\nENV A=1\nUSER node\nVOLUME /data\n"
        "FROM builder AS dev-envs\nRUN true\nFROM nginx:1.25\nEXPOSE 80\n"
    )
    dev = parse_dockerfile(text, target="dev-envs")
    assert (dev.ports, dev.user, [e.name for e in dev.env_vars], dev.volumes) == (
        [3000],
        "node",
        ["A"],
        ["/data"],
    )
    assert dev.base_image == "node:20" and dev.base_chain == ["builder"]
    last = parse_dockerfile(text)
    assert (last.ports, last.user, last.base_image) == ([80], "", "nginx:1.25")
    with pytest.raises(InputError, match="build target 'x' is not a stage"):
        parse_dockerfile(text, target="x")


def test_ports_keep_udp_and_ranges_are_expanded_or_refused():
    info = parse_dockerfile("FROM alpine\nEXPOSE 53/udp 8000-8002 1000-2000\n")
    assert [(p.port, p.protocol) for p in info.exposed] == [
        (53, "UDP"),
        (8000, "TCP"),
        (8001, "TCP"),
        (8002, "TCP"),
    ]
    assert any("port range 1000-2000/tcp has 1001 ports" in n for n in info.notes)
    c = parse_compose(
        "services:\n  a:\n    image: x\n    ports: ['5353:53/udp', '9000-9001:9000-9001', '1-5000:1-5000']\n",
        path="compose.yaml",
        app_name="a",
    )
    ports = [(p.host, p.container, p.protocol) for p in c.services[0].ports]
    assert ports == [(5353, 53, "udp"), (9000, 9000, "tcp"), (9001, 9001, "tcp")]
    assert any("port range 1-5000/tcp" in n for n in c.notes)


def test_dependencies_are_the_consumers():
    c = parse_compose(
        "services:\n  proxy:\n    image: nginx\n    depends_on: [web]\n"
        "  web:\n    build: .\n    environment:\n      DATABASE_URL: postgres://u:p@db:5432/x\n"
        "      CACHE: cache\n  db:\n    image: postgres\n  cache:\n    image: redis\n",
        path="compose.yaml",
        app_name="web",
    )
    assert [(d.name, d.type) for d in compose_dependencies(c, "web")] == [
        ("cache", "cache"),
        ("db", "database"),
    ]
    assert [d.name for d in compose_dependencies(c, "proxy")] == ["web"]
    assert compose_dependencies(c, "db") == []


def test_security_from_the_image():
    plain = plan_security(who="a", image="python:3.12", user="", ports=[8000], volumes=[])
    assert (plain.run_as_non_root, plain.run_as_user, plain.read_only_root, plain.warnings) == (
        True, 65532, True, [])  # fmt: skip
    low = plan_security(who="a", image="python:3.12", user="1000", ports=[80], volumes=[])
    assert (low.run_as_non_root, low.run_as_user, low.add_capabilities) == (False, 0, ["NET_BIND_SERVICE"])
    assert "listen on a port ≥ 1024" in low.warnings[0]
    nginx = plan_security(
        who="p", image="docker.io/library/nginx:1.25-alpine", user="", ports=[80], volumes=[]
    )
    assert (
        not nginx.run_as_non_root and not nginx.read_only_root and "nginx-unprivileged" in nginx.warnings[0]
    )
    unpriv = plan_security(
        who="p", image="nginxinc/nginx-unprivileged:1.25", user="", ports=[8080], volumes=[]
    )
    assert (unpriv.run_as_user, unpriv.read_only_root) == (101, True) and "/var/cache/nginx" in unpriv.writes


def test_persona_generate_on_a_project_describes_a_deployment(run_cli, tmp_path):
    # services sort as db (a StatefulSet, which no persona matches), wordpress: the persona is wordpress's
    r = run_cli("persona", "generate", str(PROJECTS / "wordpress-mysql"), "--dry-run")
    assert r.code == 0, r.err
    persona = yaml.safe_load(r.out)
    assert persona["spec"]["name"] == "wordpress"
    assert persona["spec"]["policies"]["security"]["runAsNonRoot"] is False
