"""Post-generation checks (offline). Never blocks writing; ``passed`` is false when an error was found."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cli.generator.context import GenContext

_MEM = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


@dataclass(frozen=True)
class Issue:
    severity: str  # error | warning | info
    category: str
    file: str
    message: str
    suggestion: str = ""


def cpu_millis(q: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", q.strip())
    if not m:
        return None
    return float(m.group(1)) if m.group(2) else float(m.group(1)) * 1000


def mem_bytes(q: str) -> float | None:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", q.strip())
    if not m:
        return None
    return float(m.group(1)) * _MEM[m.group(2) or ""]


def validate(ctx: GenContext) -> list[Issue]:
    a = ctx.analysis
    issues: list[Issue] = []
    image_only = ctx.workload is not None and not ctx.workload.built
    if not ctx.registry and not image_only:
        issues.append(
            Issue(
                "warning",
                "image",
                "deployment.yaml",
                f"Container image is placeholder '{ctx.image}' (no registry set)",
                "Set a registry: 'dorgu config set defaults.registry <registry>' or ci.registry in the "
                "workspace .dorgu.yaml",
            )
        )
    if not image_only:
        issues.append(
            Issue(
                "info",
                "image",
                "deployment.yaml",
                "Image uses ':latest' tag",
                "The CI workflow pins the image to the commit; use specific tags in production",
            )
        )
    res = ctx.resources()
    for what, parse, req, lim in (
        ("CPU", cpu_millis, res.requests.cpu, res.limits.cpu),
        ("memory", mem_bytes, res.requests.memory, res.limits.memory),
    ):
        r, li = parse(str(req)), parse(str(lim))
        if r is None or li is None:
            issues.append(
                Issue(
                    "error",
                    "resources",
                    "deployment.yaml",
                    f"{what} quantity {req!r}/{lim!r} is invalid",
                    "Use Kubernetes quantities such as 500m, 1, 256Mi, 1Gi",
                )
            )
        elif r > li:
            issues.append(
                Issue(
                    "error",
                    "resources",
                    "deployment.yaml",
                    f"Resource requests > limits: {what} request ({req}) > limit ({lim})",
                    f"{what} request must be <= {what} limit",
                )
            )
    hc = a.health_check
    if hc and a.ports and hc.port not in {p.port for p in a.ports}:
        issues.append(
            Issue(
                "warning",
                "health",
                "deployment.yaml",
                f"Health check port {hc.port} does not match any container port",
                "Ensure the health check port is one of the exposed container ports",
            )
        )
    if not hc or not hc.path:
        issues.append(
            Issue(
                "warning",
                "health",
                "deployment.yaml",
                "No health probes configured",
                "Add health.liveness/readiness in .dorgu.yaml or implement a /health endpoint",
            )
        )
    if not a.repository:
        issues.append(
            Issue(
                "info",
                "metadata",
                "argocd/application.yaml",
                "Repository URL not set",
                "Set app.repository in .dorgu.yaml or configure the git remote origin",
            )
        )
    secrets = [e.name for e in a.env_vars if e.secret]
    if secrets:
        issues.append(
            Issue(
                "info",
                "secrets",
                "deployment.yaml",
                f"Secret {a.name}-secrets must provide: {', '.join(e.lower() for e in secrets)}",
                f"kubectl create secret generic {a.name}-secrets --from-literal=<key>=<value> ...",
            )
        )
    return issues


def report(issues: list[Issue]) -> list[str]:
    lines = []
    for sev, sym in (("error", "✗"), ("warning", "⚠"), ("info", "ℹ")):
        for i in issues:
            if i.severity == sev:
                lines.append(f"  {sym} [{i.category}] {i.message}")
                if i.suggestion:
                    lines.append(f"    → {i.suggestion}")
    return lines or ["  All validation checks passed"]
