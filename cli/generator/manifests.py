"""Deployment, Service, Ingress, HPA and Argo CD Application as plain dicts (dumped with sorted keys)."""

from __future__ import annotations

from typing import Any

from cli.analyzer.project import Mount
from cli.analyzer.security import NON_ROOT_UID, SecurityPlan, plan_security
from cli.generator.context import GenContext

PROBE_TIMEOUT_S = 5
PROBE_FAILURES = 3


def _meta(ctx: GenContext, *, annotations: bool = True, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ctx.name, "namespace": namespace or ctx.namespace, "labels": ctx.labels()}
    if annotations and ctx.annotations():
        meta["annotations"] = ctx.annotations()
    return meta


def _probes(ctx: GenContext) -> dict[str, Any]:
    hc = ctx.analysis.health_check
    if (hc is None or not hc.path) and ctx.workload is not None and ctx.workload.exec_probe:
        command = ctx.workload.exec_probe

        def exec_probe(delay: int, period: int) -> dict[str, Any]:
            return {
                "exec": {"command": command},
                "initialDelaySeconds": delay,
                "periodSeconds": period,
                "timeoutSeconds": PROBE_TIMEOUT_S,
                "failureThreshold": PROBE_FAILURES,
            }

        return {"livenessProbe": exec_probe(30, 10), "readinessProbe": exec_probe(5, 5)}
    if hc is None or not hc.path:
        return {}
    health = ctx.configs.app.health
    ready_cfg = health.readiness if health else None

    def probe(path: str, delay: int, period: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": hc.port},
            "initialDelaySeconds": delay,
            "periodSeconds": period,
            "timeoutSeconds": PROBE_TIMEOUT_S,
            "failureThreshold": PROBE_FAILURES,
        }

    return {
        "livenessProbe": probe(hc.path, hc.initial_delay_seconds or 10, hc.period_seconds or 10),
        "readinessProbe": probe(
            hc.readiness_path or hc.path,
            (ready_cfg.initial_delay if ready_cfg else 0) or 5,
            (ready_cfg.period if ready_cfg else 0) or 5,
        ),
    }


def _env(ctx: GenContext) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in ctx.analysis.env_vars:
        if e.secret:
            key = e.name.lower()
            out.append(
                {"name": e.name, "valueFrom": {"secretKeyRef": {"name": f"{ctx.name}-secrets", "key": key}}}
            )
        else:
            out.append({"name": e.name, "value": e.value})
    return out


def security_plan(ctx: GenContext) -> SecurityPlan:
    """The workload's plan, else the one the analysis implies (``persona generate`` without a project)."""
    if ctx.workload is not None:
        return ctx.workload.security
    df = ctx.analysis.dockerfile
    return plan_security(
        who=ctx.name,
        image=df.base_image if df else "",
        user=df.user if df else "",
        ports=[p.port for p in ctx.analysis.ports],
        volumes=[],
    )


def _mounts(ctx: GenContext) -> list[Mount]:
    return ctx.workload.mounts if ctx.workload is not None else [Mount(name="tmp", path="/tmp")]


def _volume(m: Mount) -> dict[str, Any]:
    if m.secret:
        return {"name": m.name, "secret": {"secretName": m.secret}}
    if m.claim:
        return {"name": m.name, "persistentVolumeClaim": {"claimName": m.claim}}
    return {"name": m.name, "emptyDir": {"medium": "Memory"} if m.memory else {}}


def _volume_mount(m: Mount, plan: SecurityPlan) -> dict[str, Any]:
    """A claim mounted for an image that starts as root (the database images) uses a sub-directory: a fresh
    volume's root may hold ``lost+found``, which makes postgres' and mysql's initialisation refuse the
    directory; their entrypoints (root) own the sub-directory themselves."""
    out: dict[str, Any] = {"name": m.name, "mountPath": m.path}
    if m.secret:
        out["subPath"] = m.key
    elif m.claim and not plan.run_as_non_root and plan.run_as_user is None:
        out["subPath"] = m.name
    if m.read_only:
        out["readOnly"] = True
    return out


def deployment(ctx: GenContext) -> dict[str, Any]:
    """The Deployment, or for a StatefulSet workload the StatefulSet (named volumes as claim templates)."""
    a = ctx.analysis
    res = ctx.resources()
    plan = security_plan(ctx)
    stateful = ctx.workload is not None and ctx.workload.kind == "StatefulSet"
    csc: dict[str, Any] = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": plan.read_only_root}
    if plan.drop_all:
        csc["capabilities"] = {"drop": ["ALL"]}
        if plan.add_capabilities:
            csc["capabilities"]["add"] = plan.add_capabilities
    mounts = _mounts(ctx)
    container: dict[str, Any] = {
        "name": ctx.name,
        "image": ctx.image,
        "resources": {
            "requests": {"cpu": res.requests.cpu, "memory": res.requests.memory},
            "limits": {"cpu": res.limits.cpu, "memory": res.limits.memory},
        },
        "securityContext": csc,
        "volumeMounts": [_volume_mount(m, plan) for m in mounts],
        **_probes(ctx),
    }
    if ctx.workload is not None and ctx.workload.command:
        container["args"] = ctx.workload.command
    if a.ports:
        container["ports"] = [
            {"name": f"port-{i}", "containerPort": p.port, "protocol": p.protocol}
            for i, p in enumerate(a.ports)
        ]
    if env := _env(ctx):
        container["env"] = env
    template_meta: dict[str, Any] = {"labels": ctx.labels()}
    if ctx.annotations():
        template_meta["annotations"] = ctx.annotations()
    pod_sc: dict[str, Any] = {"seccompProfile": {"type": "RuntimeDefault"}}
    if plan.run_as_non_root:
        uid = plan.run_as_user if plan.run_as_user is not None else NON_ROOT_UID
        pod_sc |= {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    else:
        pod_sc["runAsNonRoot"] = False
        if plan.run_as_user is not None:
            pod_sc["runAsUser"] = plan.run_as_user
    claims = [m for m in mounts if m.claim] if stateful else []
    spec: dict[str, Any] = {
        "replicas": a.scaling.min_replicas or 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": ctx.name}},
        "template": {
            "metadata": template_meta,
            "spec": {
                "securityContext": pod_sc,
                "containers": [container],
                "volumes": [_volume(m) for m in mounts if m not in claims],
            },
        },
    }
    if stateful:
        spec["serviceName"] = ctx.name
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": m.name, "labels": ctx.labels()},
                "spec": _claim_spec(ctx),
            }
            for m in claims
        ]
        return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(ctx), "spec": spec}
    policy = ctx.configs.app.deployment_policy
    if policy.strategy == "Recreate":
        spec["strategy"] = {"type": "Recreate"}
    elif policy.strategy in ("", "RollingUpdate") and (policy.max_surge or policy.max_unavailable):
        spec["strategy"] = {
            "type": "RollingUpdate",
            "rollingUpdate": {
                "maxSurge": policy.max_surge or "25%",
                "maxUnavailable": policy.max_unavailable or "25%",
            },
        }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(ctx), "spec": spec}


def _claim_spec(ctx: GenContext) -> dict[str, Any]:
    size = ctx.workload.claim_size if ctx.workload is not None else "1Gi"
    return {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}


def claims(ctx: GenContext) -> list[dict[str, Any]]:
    """PersistentVolumeClaims of a Deployment's named volumes (a StatefulSet templates its own)."""
    if ctx.workload is None or ctx.workload.kind != "Deployment":
        return []
    out = []
    for m in ctx.workload.mounts:
        if m.claim:
            meta = {"name": m.claim, "namespace": ctx.namespace, "labels": ctx.labels()}
            out.append(
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": meta,
                    "spec": _claim_spec(ctx),
                }
            )
    return out


def service(ctx: GenContext) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(ctx),
        "spec": {
            "type": "ClusterIP",
            "selector": {"app.kubernetes.io/name": ctx.name},
            "ports": [
                {"name": f"port-{i}", "port": p.port, "targetPort": p.port, "protocol": p.protocol}
                for i, p in enumerate(ctx.analysis.ports)
            ],
        },
    }


def ingress(ctx: GenContext) -> dict[str, Any]:
    ws, app_ing = ctx.configs.workspace.ingress, ctx.configs.app.ingress
    host = ctx.ingress_host()
    backend = {"service": {"name": ctx.name, "port": {"number": ctx.http_port()}}}
    paths = (app_ing.paths if app_ing and app_ing.enabled else None) or []
    rule_paths = [
        {"path": p.path, "pathType": p.path_type or "Prefix", "backend": backend} for p in paths
    ] or [{"path": "/", "pathType": "Prefix", "backend": backend}]
    meta = _meta(ctx)
    spec: dict[str, Any] = {
        "ingressClassName": ws.class_,
        "rules": [{"host": host, "http": {"paths": rule_paths}}],
    }
    if ctx.tls():
        secret = (app_ing.tls.secret_name if app_ing else "") or f"{ctx.name}-tls"
        spec["tls"] = [{"hosts": [host], "secretName": secret}]
        if ws.tls.cluster_issuer:
            meta.setdefault("annotations", {})["cert-manager.io/cluster-issuer"] = ws.tls.cluster_issuer
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def hpa(ctx: GenContext) -> dict[str, Any]:
    s = ctx.analysis.scaling

    def metric(name: str, pct: int) -> dict[str, Any]:
        return {
            "type": "Resource",
            "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": pct}},
        }

    metrics = [metric("cpu", s.target_cpu_percent or 70)]
    if s.target_memory_percent:
        metrics.append(metric("memory", s.target_memory_percent))
    return {
        "apiVersion": ctx.hpa_api_version,
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(ctx, annotations=False),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": ctx.name},
            "minReplicas": s.min_replicas or 2,
            "maxReplicas": max(s.max_replicas or 10, s.min_replicas or 2),
            "metrics": metrics,
        },
    }


def argocd_application(ctx: GenContext) -> dict[str, Any]:
    argo = ctx.configs.workspace.argocd
    repo = ctx.analysis.repository or f"https://github.com/YOUR_ORG/{ctx.name}.git"
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": _meta(ctx, annotations=False, namespace=argo.namespace),
        "spec": {
            "project": argo.project,
            "source": {
                "repoURL": repo,
                "path": ctx.manifests_path,
                "targetRevision": "HEAD",
                # every workload's directory, not the Application itself (it would manage itself)
                **({"directory": {"recurse": True, "exclude": "argocd/*"}} if ctx.project else {}),
            },
            "destination": {"server": argo.destination.server, "namespace": ctx.namespace},
            "syncPolicy": {
                "automated": {
                    "prune": argo.sync_policy.automated.prune,
                    "selfHeal": argo.sync_policy.automated.self_heal,
                },
                "syncOptions": ["CreateNamespace=true"],
            },
        },
    }
