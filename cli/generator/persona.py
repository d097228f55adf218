"""The ApplicationPersona, built from ``dorgu.domain.types`` and serialised in the CRD's field order.

Rules: ``resources.profile`` is mapped onto the CRD's enum (a profile name such as ``api`` is not in it and
the API server would reject it); ``maxReplicas`` is at least 1 and at least ``minReplicas``; dependency types
are mapped onto the CRD's enum; the description is the app's own; the security policy is the generated
Deployment's (:func:`cli.generator.manifests.security_plan`: non-root and read-only root where the image
allows them, never privilege escalation); values are escaped by a real YAML serialiser.
"""

from __future__ import annotations

from typing import Any

import msgspec

from cli.analyzer.model import dep_type
from cli.generator.context import GenContext, label_value
from cli.generator.manifests import security_plan
from cli.generator.yamlio import dump
from dorgu.domain import types as t
from dorgu.runtime.meta import ObjectMeta

PROFILE_FOR_TYPE = {"api": "standard", "web": "minimal", "worker": "compute-heavy", "cron": "minimal"}
APP_TYPES = ("api", "web", "worker", "cron", "daemon")
TIERS = ("critical", "standard", "best-effort")
BEHAVIORS = ("conservative", "balanced", "aggressive")
STRATEGIES = ("RollingUpdate", "Recreate", "BlueGreen", "Canary")


def _pick(value: str, allowed: tuple[str, ...], default: str) -> str:
    return value if value in allowed else default


def build_persona(ctx: GenContext) -> t.ApplicationPersona:
    a, app = ctx.analysis, ctx.configs.app
    res = ctx.resources()
    plan = security_plan(ctx)
    labels = {"app.kubernetes.io/name": a.name, "app.kubernetes.io/managed-by": "dorgu"}
    if ctx.project and label_value(ctx.project):
        labels["app.kubernetes.io/part-of"] = label_value(ctx.project)
    if a.team and label_value(a.team):
        labels["dorgu.io/team"] = label_value(a.team)
    s = a.scaling
    min_r = max(s.min_replicas, 0)
    hc = a.health_check
    health = None
    if hc is not None and hc.path:
        health = t.HealthSpec(
            liveness_path=hc.path,
            readiness_path=hc.readiness_path or hc.path,
            port=hc.port or None,
            startup_grace_period=(app.health.startup_grace_period if app.health else "") or "30s",
        )
    networking = None
    if a.ports:
        ingress = None
        if app.ingress is not None and app.ingress.enabled:
            ingress = t.IngressSpec(
                enabled=True,
                host=ctx.ingress_host(),
                paths=[p.path for p in app.ingress.paths] or None,
                tls_enabled=ctx.tls(),
            )
        networking = t.NetworkingSpec(
            ports=[t.PortSpec(port=p.port, protocol=p.protocol, purpose=p.purpose or None) for p in a.ports],
            ingress=ingress,
        )
    ops = app.operations
    ownership = t.OwnershipSpec(
        team=a.team or None,
        owner=a.owner or None,
        repository=a.repository or None,
        oncall=ops.on_call or None,
        runbook=ops.runbook or None,
    )
    policy = app.deployment_policy
    spec = t.ApplicationPersonaSpec(
        name=a.name,
        version="1",
        type=_pick(a.type, APP_TYPES, "api"),
        tier=_pick(app.app.tier, TIERS, "standard"),
        technical=t.TechnicalSpec(
            language=a.language if a.language != "unknown" else None,
            framework=a.framework or None,
            description=a.description or None,
        ),
        resources=t.ResourceSpec(
            requests=t.ResourceQuantities(cpu=res.requests.cpu, memory=res.requests.memory),
            limits=t.ResourceQuantities(cpu=res.limits.cpu, memory=res.limits.memory),
            profile=PROFILE_FOR_TYPE.get(a.resource_profile, "standard"),
        ),
        scaling=t.ScalingSpec(
            min_replicas=min_r,
            max_replicas=max(s.max_replicas, min_r, 1),
            target_cpu=s.target_cpu_percent if 0 < s.target_cpu_percent <= 100 else None,
            target_memory=s.target_memory_percent if 0 < s.target_memory_percent <= 100 else None,
            behavior=_pick(s.behavior, BEHAVIORS, "balanced"),
        ),
        health=health,
        dependencies=[
            t.Dependency(
                name=d.name, type=dep_type(d.type), required=d.required, health_check=d.health_check or None
            )
            for d in a.dependencies
        ]
        or None,
        networking=networking,
        ownership=ownership if any(msgspec.structs.astuple(ownership)) else None,
        policies=t.PersonaPolicies(
            security=t.SecurityPolicy(
                run_as_non_root=plan.run_as_non_root,
                read_only_root_filesystem=plan.read_only_root,
                allow_privilege_escalation=False,
            ),
            deployment=t.DeploymentPolicy(
                strategy=_pick(policy.strategy, STRATEGIES, "RollingUpdate"),
                max_surge=policy.max_surge or "25%",
                max_unavailable=policy.max_unavailable or "25%",
            ),
            maintenance=t.MaintenancePolicy(
                window=ops.maintenance_window or None, auto_restart=ops.auto_restart
            ),
        ),
    )
    return t.ApplicationPersona(
        api_version=t.API_VERSION,
        kind="ApplicationPersona",
        metadata=ObjectMeta(name=a.name, namespace=ctx.namespace, labels=labels),
        spec=spec,
    )


def persona_dict(persona: t.ApplicationPersona) -> dict[str, Any]:
    return msgspec.to_builtins(persona)


def persona_yaml(persona: t.ApplicationPersona) -> str:
    return dump(persona_dict(persona), sort_keys=False)
