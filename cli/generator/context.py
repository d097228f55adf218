"""Everything the generators need, resolved once with the documented precedence."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cli.analyzer.model import AppAnalysis
from cli.analyzer.project import Workload
from cli.settings import Configs, CpuMem, ResourceProfile, profile_for

HTTP_PORTS = (80, 8080, 3000, 5000, 8000)


def label_value(raw: str) -> str:
    v = re.sub(r"[^A-Za-z0-9._-]+", "-", raw)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", v)


def hpa_api_version(kube_version: str | None) -> str:
    """``autoscaling/v2`` from 1.23 on, ``autoscaling/v2beta2`` before; the newest when unknown."""
    if not kube_version:
        return "autoscaling/v2"
    m = re.match(r"v?(\d+)\.(\d+)", kube_version.strip())
    if not m:
        from cli.errors import InputError

        raise InputError(f"--kube-version {kube_version!r} is not a version like 1.20 or v1.28.3")
    return "autoscaling/v2" if (int(m.group(1)), int(m.group(2))) >= (1, 23) else "autoscaling/v2beta2"


@dataclass
class GenContext:
    analysis: AppAnalysis
    configs: Configs
    namespace: str
    registry: str
    hpa_api_version: str = "autoscaling/v2"
    manifests_path: str = "k8s"
    """The output directory as seen from the repository root (Argo CD ``source.path``, the CI workflow)."""
    workload: Workload | None = None
    """The workload this context describes (its image, security, volumes); ``None``: the analysis alone."""
    project: str = ""
    """The project's name when it has several workloads (label ``app.kubernetes.io/part-of``)."""
    repo_prefix: str = ""
    """The app directory relative to the git repository root (CI build contexts); "" at the root."""
    workflow_path: str = "../.github/workflows/deploy.yaml"
    """Where the CI workflow goes, relative to the output directory (the repository root's .github/)."""
    persona_markdown: str | None = None
    """PERSONA.md as the LLM wrote it; ``None``: the deterministic template."""

    @property
    def name(self) -> str:
        return self.analysis.name

    @property
    def image(self) -> str:
        if self.workload is not None and self.workload.image:
            return self.workload.image
        return f"{self.registry.rstrip('/')}/{self.name}:latest" if self.registry else f"{self.name}:latest"

    def labels(self) -> dict[str, str]:
        a, c = self.analysis, self.configs
        labels = {"app.kubernetes.io/name": self.name, "app.kubernetes.io/managed-by": "dorgu"}
        if self.project and label_value(self.project):
            labels["app.kubernetes.io/part-of"] = label_value(self.project)
        if a.team and label_value(a.team):
            labels["app.kubernetes.io/team"] = label_value(a.team)
        if a.environment and label_value(a.environment):
            labels["app.kubernetes.io/environment"] = label_value(a.environment)
        labels |= c.workspace.labels.custom
        labels |= c.app.labels
        return labels

    def annotations(self) -> dict[str, str]:
        return self.configs.workspace.annotations.custom | self.configs.app.annotations

    def resources(self) -> ResourceProfile:
        """Workspace profile for the app's type (or workspace defaults), overridden per field by the LLM's
        checked proposal, then by the app."""
        base = profile_for(self.configs.workspace, self.analysis.resource_profile)
        app = self.configs.app.resources
        req = {k: str(getattr(base.requests, k)) for k in ("cpu", "memory")}
        lim = {k: str(getattr(base.limits, k)) for k in ("cpu", "memory")}
        proposed = self.analysis.resources
        if proposed is not None:
            req |= {
                k: getattr(proposed.requests, k) for k in ("cpu", "memory") if getattr(proposed.requests, k)
            }
            lim |= {k: getattr(proposed.limits, k) for k in ("cpu", "memory") if getattr(proposed.limits, k)}
        if app is not None:
            req |= {k: str(getattr(app.requests, k)) for k in ("cpu", "memory") if getattr(app.requests, k)}
            lim |= {k: str(getattr(app.limits, k)) for k in ("cpu", "memory") if getattr(app.limits, k)}
        return ResourceProfile(requests=CpuMem(**req), limits=CpuMem(**lim))

    def http_port(self) -> int:
        ports = [p.port for p in self.analysis.ports if p.protocol == "TCP"]
        return next((p for p in ports if p in HTTP_PORTS), ports[0] if ports else 80)

    def ingress_enabled(self) -> bool:
        if self.workload is not None and (not self.workload.ingress or self.workload.kind != "Deployment"):
            return False
        if not any(p.protocol == "TCP" for p in self.analysis.ports):  # an Ingress routes HTTP only
            return False
        app_ing = self.configs.app.ingress
        if app_ing is not None and app_ing.enabled is not None:
            return bool(app_ing.enabled) and bool(self.analysis.ports)
        return (
            self.configs.workspace.ingress.enabled
            and bool(self.analysis.ports)
            and (self.analysis.type in ("api", "web"))
        )

    def ingress_host(self) -> str:
        app_ing = self.configs.app.ingress
        if app_ing is not None and app_ing.host:
            return app_ing.host
        return f"{self.name}{self.configs.workspace.ingress.domain_suffix}"

    def tls(self) -> bool:
        app_ing = self.configs.app.ingress
        return bool(app_ing and app_ing.tls.enabled) or self.configs.workspace.ingress.tls.enabled
