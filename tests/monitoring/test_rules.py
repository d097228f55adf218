"""deploy/monitoring without a cluster: promtool checks and unit-tests the alert rules (real Debian
``promtool``, real ``for:`` durations), every alert has a unit test that makes it fire and a runbook section,
the ServiceMonitor names a port the operator's metrics Service really has, and the dashboard is sound."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.controllers.prometheus_kit import ensure_binaries
from tests.e2e.kit import DEPLOY, render
from tests.monitoring import kit


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = ensure_binaries().promtool
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_promtool_checks_the_rules_and_passes_their_unit_tests(tmp_path: Path) -> None:
    kit.rules_file(tmp_path / "rules.yaml")
    r = _promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(kit.alerts())} rules found" in r.stdout
    for t in kit.UNIT_TESTS:
        shutil.copy(t, tmp_path / t.name)
    r = _promtool("test", "rules", *(t.name for t in kit.UNIT_TESTS), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(kit.UNIT_TESTS), r.stdout


def test_promtool_unit_tests_fail_when_an_alert_is_changed(tmp_path: Path) -> None:
    """The unit tests can fail: with one threshold loosened, the case that must stay silent fires."""
    groups = kit.rule_groups()
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == "DorguPersonasFailingValidation"]
    assert rule["expr"].endswith("> 0")
    rule["expr"] = rule["expr"].removesuffix("> 0") + ">= 0"  # "all personas pass" now fires
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    for t in kit.UNIT_TESTS:
        shutil.copy(t, tmp_path / t.name)
    r = _promtool("test", "rules", *(t.name for t in kit.UNIT_TESTS), cwd=tmp_path)
    assert r.returncode != 0
    assert "all personas pass" in r.stdout + r.stderr


def _fired_in_unit_tests() -> set[str]:
    fired = set()
    for path in kit.UNIT_TESTS:
        for case in kit.load(path)["tests"]:
            for t in case.get("alert_rule_test") or []:
                if t.get("exp_alerts"):
                    fired.add(t["alertname"])
    return fired


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_every_alert_fires_in_a_unit_test_and_has_a_runbook_section() -> None:
    alerts = kit.alerts()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names)), "alert names are unique"
    assert set(names) - _fired_in_unit_tests() == set(), "alerts no unit test makes fire"
    headings = {
        _anchor(line.lstrip("#"))
        for line in kit.OPERATIONS.read_text().splitlines()
        if line.startswith("### ")
    }
    for a in alerts:
        assert a["labels"]["severity"] in ("critical", "warning", "info"), a["alert"]
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"]), a["alert"]
        url = a["annotations"]["runbook_url"]
        assert url.endswith(f"docs/operations.md#{a['alert'].lower()}"), url
        assert a["alert"].lower() in headings, f"docs/operations.md has no section for {a['alert']}"
        assert f'job="{kit.JOB}"' in a["expr"], a["alert"]


def _matches(selector: dict[str, str], labels: dict[str, str] | None) -> bool:
    return all((labels or {}).get(k) == v for k, v in selector.items())


def test_the_service_monitor_names_a_port_the_metrics_service_has() -> None:
    sm = kit.load(kit.SERVICE_MONITOR)
    objs = render(DEPLOY)
    namespaces = sm["spec"]["namespaceSelector"]["matchNames"]
    services = [
        o for o in objs
        if o["kind"] == "Service" and o["metadata"]["namespace"] in namespaces
        and _matches(sm["spec"]["selector"]["matchLabels"], o["metadata"].get("labels"))
    ]  # fmt: skip
    assert [s["metadata"]["name"] for s in services] == [kit.JOB], (
        "the ServiceMonitor selects dorgu-metrics only"
    )
    service = services[0]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    container_ports = {
        p["name"] for c in sts["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []
    }
    args = [a for c in sts["spec"]["template"]["spec"]["containers"] for a in c.get("args") or []]
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in ports, f"the Service has no port named {ep['port']!r}"
        target = ports[ep["port"]]["targetPort"]
        assert target in container_ports, f"the pods have no port named {target!r}"
        container_port = next(
            p["containerPort"]
            for c in sts["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports") or []
            if p["name"] == target
        )
        assert f"--metrics-bind-address=0.0.0.0:{container_port}" in args, "the port serves /metrics"
        assert ep["path"] == "/metrics"
    assert _matches(service["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"])


def test_the_plain_scrape_config_keeps_the_same_targets_and_job() -> None:
    sm = kit.load(kit.SERVICE_MONITOR)
    (job,) = kit.load(kit.SCRAPE_CONFIG)["scrape_configs"]
    assert job["job_name"] == kit.JOB
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    assert keep["source_labels"] == ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"]
    assert keep["regex"] == f"{kit.JOB};{sm['spec']['endpoints'][0]['port']}"
    assert (
        job["kubernetes_sd_configs"][0]["namespaces"]["names"]
        == sm["spec"]["namespaceSelector"]["matchNames"]
    )


def test_the_component_lists_its_files_and_the_dashboard_is_sound() -> None:
    k = kit.load(kit.MONITORING / "kustomization.yaml")
    assert k["kind"] == "Component"
    for f in k["resources"]:
        assert (kit.MONITORING / f).is_file(), f
    (gen,) = k["configMapGenerator"]
    assert gen["options"]["labels"]["grafana_dashboard"] == "1"
    assert [kit.MONITORING / f for f in gen["files"]] == [kit.DASHBOARD]
    d = kit.dashboard()
    assert [v["name"] for v in d["templating"]["list"]] == ["datasource"]
    queries = kit.dashboard_queries()
    assert queries
    for title, expr in queries:
        assert f'job="{kit.JOB}"' in expr, title
        assert "$" not in expr, f"{title}: a template variable the live test would not substitute"
    titles = " | ".join(t for t, _ in queries).lower()
    for wanted in ("reconciles", "latency", "workqueue depth", "leader", "verdicts", "websocket", "phase"):
        assert wanted in titles, wanted
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_the_readme_links_the_kit() -> None:
    readme = (kit.ROOT / "README.md").read_text()
    assert "deploy/monitoring" in readme
    assert "docs/operations.md" in readme


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) is not installed")
def test_kustomize_builds_the_operator_with_the_component(tmp_path: Path) -> None:
    """What a user's kustomization gets: deploy/operator plus the Component, built by kubectl's kustomize."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(kit.ROOT / "deploy" / "operator", tmp_path)],
                "components": [os.path.relpath(kit.MONITORING, tmp_path)],
            }
        )
    )
    r = subprocess.run(["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    objs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(r.stdout) if o}
    sm = objs[("ServiceMonitor", "dorgu")]
    assert sm == kit.load(kit.SERVICE_MONITOR)
    assert objs[("PrometheusRule", "dorgu")] == kit.load(kit.PROMETHEUS_RULE)
    cm = objs[("ConfigMap", "dorgu-grafana-dashboard")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["grafana-dashboard.json"]) == kit.dashboard()
    service = objs[("Service", kit.JOB)]
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
