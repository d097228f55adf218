"""Where a kind lives in the REST API: group, version, plural, scope — and the paths built from them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True, kw_only=True)
class Resource:
    """A served resource, e.g. ``Resource(group="apps", version="v1", plural="deployments", ...)``."""

    group: str
    """API group; ``""`` for the core group."""
    version: str
    """API version within the group, e.g. ``v1``."""
    plural: str
    """Resource name in URLs, e.g. ``deployments``."""
    kind: str
    """Kind in objects, e.g. ``Deployment``."""
    namespaced: bool
    """Whether objects live in a namespace."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_path(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def path(
        self, *, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """The collection path (all namespaces when ``namespace`` is None), or one object's path."""
        p = self.group_version_path
        if self.namespaced and namespace:
            p += f"/namespaces/{quote(namespace, safe='')}"
        elif self.namespaced and name:
            raise ValueError(f"{self.plural} is namespaced: an object path needs a namespace")
        p += f"/{self.plural}"
        if name:
            p += f"/{quote(name, safe='')}"
            if subresource:
                p += f"/{subresource}"
        elif subresource:
            raise ValueError("a subresource needs an object name")
        return p

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


# The built-in kinds this code base reads or writes: each one is declared here once, never per module.

NAMESPACES = Resource(group="", version="v1", plural="namespaces", kind="Namespace", namespaced=False)
NODES = Resource(group="", version="v1", plural="nodes", kind="Node", namespaced=False)
PODS = Resource(group="", version="v1", plural="pods", kind="Pod", namespaced=True)
CONFIGMAPS = Resource(group="", version="v1", plural="configmaps", kind="ConfigMap", namespaced=True)
SECRETS = Resource(group="", version="v1", plural="secrets", kind="Secret", namespaced=True)
EVENTS = Resource(group="", version="v1", plural="events", kind="Event", namespaced=True)
DEPLOYMENTS = Resource(group="apps", version="v1", plural="deployments", kind="Deployment", namespaced=True)
STATEFULSETS = Resource(
    group="apps", version="v1", plural="statefulsets", kind="StatefulSet", namespaced=True
)
DAEMONSETS = Resource(group="apps", version="v1", plural="daemonsets", kind="DaemonSet", namespaced=True)
LEASES = Resource(group="coordination.k8s.io", version="v1", plural="leases", kind="Lease", namespaced=True)
VALIDATING_WEBHOOK_CONFIGURATIONS = Resource(
    group="admissionregistration.k8s.io", version="v1", plural="validatingwebhookconfigurations",
    kind="ValidatingWebhookConfiguration", namespaced=False,
)  # fmt: skip
