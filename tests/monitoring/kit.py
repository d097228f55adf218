"""The observability kit as the tests read it: deploy/monitoring's rule groups, alerts, dashboard queries.

:func:`rule_groups` are the PrometheusRule's ``spec.groups`` (what promtool and a real Prometheus load);
:func:`rules_file` writes them as a Prometheus rule file, optionally with every ``for:`` replaced (the live
test's short durations). :func:`dashboard_queries` lists each PromQL expression of the Grafana dashboard
with ``$__rate_interval`` replaced by a fixed window (what Grafana would substitute)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
SERVICE_MONITOR = MONITORING / "servicemonitor.yaml"
SCRAPE_CONFIG = MONITORING / "prometheus-scrape-config.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
UNIT_TESTS = tuple(sorted(Path(__file__).parent.glob("*_test.yaml")))
OPERATIONS = ROOT / "docs" / "operations.md"
JOB = "dorgu-metrics"
"""The job every rule and query selects: the ServiceMonitor's (its Service's name) and the scrape config's."""


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rule_groups() -> list[dict[str, Any]]:
    return list(load(PROMETHEUS_RULE)["spec"]["groups"])


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups() for r in g["rules"] if "alert" in r]


def rules_file(path: Path, *, for_: str | None = None) -> Path:
    """Write the rule groups to ``path``; ``for_`` replaces every rule's ``for:`` when given."""
    groups = rule_groups()
    if for_ is not None:
        for g in groups:
            for r in g["rules"]:
                if "for" in r:
                    r["for"] = for_
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels") or [])


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_queries(*, rate_interval: str = "5m") -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    out = []
    for p in _panels(dashboard()["panels"]):
        for t in p.get("targets") or []:
            out.append((p["title"], t["expr"].replace("$__rate_interval", rate_interval)))
    return out
