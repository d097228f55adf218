"""Kubernetes objects the tests create, built in one place so every suite checks the same shapes."""

from __future__ import annotations

from typing import Any


def deployment(
    name: str,
    *,
    replicas: int = 2,
    app: str | None = None,
    label: str = "app.kubernetes.io/name",
    container: dict[str, Any] | None = None,
    pod_security: dict[str, Any] | None = None,
    image: str = "nginx:1.27",
) -> dict[str, Any]:
    """A Deployment of app ``app`` (default ``name``, under ``label``) whose one container passes every
    persona rule of a default API persona; ``container`` overrides the container's top-level fields."""
    c = {
        "name": "app",
        "image": image,
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "500m", "memory": "512Mi"},
        },
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
        **(container or {}),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {label: app or name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"pod": name}},
            "template": {
                "metadata": {"labels": {"pod": name}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True} if pod_security is None else pod_security,
                    "containers": [c],
                },
            },
        },
    }
