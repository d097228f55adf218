"""Where dorgu's own kinds live in the REST API, and the labels that name an application.

Every module that reads or writes a persona uses these declarations; the built-in kinds (Deployments,
Nodes, Leases, …) are declared once in :mod:`dorgu.runtime.resource`.
"""

from __future__ import annotations

from dorgu.domain.types import GROUP, VERSION
from dorgu.runtime.resource import Resource

__all__ = ["APPLICATION_PERSONAS", "APP_LABEL", "CLUSTER_PERSONAS", "NAME_LABEL"]

APPLICATION_PERSONAS = Resource(
    group=GROUP, version=VERSION, plural="applicationpersonas", kind="ApplicationPersona", namespaced=True
)
CLUSTER_PERSONAS = Resource(
    group=GROUP, version=VERSION, plural="clusterpersonas", kind="ClusterPersona", namespaced=False
)

NAME_LABEL = "app.kubernetes.io/name"
"""The label naming the application a workload belongs to; a persona's ``spec.name`` matches its value."""
APP_LABEL = "app"
"""The older label naming the application; a Deployment is matched by it only without a :data:`NAME_LABEL`."""
