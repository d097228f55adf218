"""Deployment, Service, Ingress, HPA and Argo CD Application as plain dicts (dumped with sorted keys)."""

from __future__ import annotations

from typing import Any

from cli.generator.context import GenContext

PROBE_TIMEOUT_S = 5
PROBE_FAILURES = 3
NON_ROOT_UID = 65532


def _meta(ctx: GenContext, *, annotations: bool = True, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ctx.name, "namespace": namespace or ctx.namespace, "labels": ctx.labels()}
    if annotations and ctx.annotations():
        meta["annotations"] = ctx.annotations()
    return meta


def _uid(user: str) -> int:
    """The Dockerfile's numeric, non-root USER, else a fixed non-root uid (runAsNonRoot must be checkable)."""
    uid = user.split(":", 1)[0]
    return int(uid) if uid.isdigit() and int(uid) != 0 else NON_ROOT_UID


def _probes(ctx: GenContext) -> dict[str, Any]:
    hc = ctx.analysis.health_check
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


def deployment(ctx: GenContext) -> dict[str, Any]:
    a = ctx.analysis
    res = ctx.resources()
    uid = _uid(a.dockerfile.user if a.dockerfile else "")
    container: dict[str, Any] = {
        "name": ctx.name,
        "image": ctx.image,
        "resources": {
            "requests": {"cpu": res.requests.cpu, "memory": res.requests.memory},
            "limits": {"cpu": res.limits.cpu, "memory": res.limits.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        **_probes(ctx),
    }
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
    spec: dict[str, Any] = {
        "replicas": a.scaling.min_replicas or 2,
        "selector": {"matchLabels": {"app.kubernetes.io/name": ctx.name}},
        "template": {
            "metadata": template_meta,
            "spec": {
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": uid,
                    "runAsGroup": uid,
                    "fsGroup": uid,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [container],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            },
        },
    }
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
            "source": {"repoURL": repo, "path": ctx.manifests_path, "targetRevision": "HEAD"},
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
