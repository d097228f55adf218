"""A small synchronous Kubernetes HTTP client for the test harness (stdlib ``urllib`` only).

It exists so the control plane can install CRDs, mint tokens and apply fixtures from plain synchronous code
(pytest fixtures, the ``dev cluster`` command) without an event loop. The operator itself uses the async
client of ``dorgu.runtime``; this one is deliberately minimal and never on a hot path.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer from the API server; ``status`` is the Kubernetes Status object when there is one."""

    def __init__(self, code: int, body: bytes, *, method: str, path: str) -> None:
        self.code = code
        self.body = body
        try:
            self.status: JSON = json.loads(body)
        except ValueError:
            self.status = {}
        self.reason: str = self.status.get("reason", "")
        self.message: str = self.status.get("message", body.decode(errors="replace")[:500])
        super().__init__(f"{method} {path}: HTTP {code} {self.reason}: {self.message}")


@dataclass(frozen=True)
class ResourceInfo:
    """Where a kind lives in the REST API, as discovery reports it."""

    group_version: str
    """``v1`` or ``group/version``."""
    plural: str
    """The resource name, e.g. ``deployments``."""
    namespaced: bool
    """Whether objects of this kind live in a namespace."""

    def path(self, *, namespace: str | None, name: str | None = None) -> str:
        base = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{urllib.parse.quote(namespace)}"
        elif self.namespaced and name:
            raise ValueError(f"{self.plural} is namespaced: give a namespace")
        # a namespaced kind without a namespace (and without a name) is the all-namespaces collection
        base += f"/{self.plural}"
        return f"{base}/{urllib.parse.quote(name)}" if name else base


@dataclass
class HarnessClient:
    """Talks to one API server with a bearer token, trusting only the given CA."""

    server: str
    """Base URL, e.g. ``https://127.0.0.1:6443``."""
    token: str
    """Bearer token."""
    ca_file: str
    """PEM file of the CA that signed the server's certificate."""
    timeout: float = 30.0
    """Seconds per request."""
    user_agent: str = "dorgu-envtest"
    """User-Agent header (visible in the audit log)."""
    _ctx: ssl.SSLContext = field(init=False, repr=False)
    _discovery: dict[tuple[str, str], ResourceInfo] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._ctx = ssl.create_default_context(cafile=self.ca_file)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        raw = self.request_raw(
            method, path, body=body, content_type=content_type, accept=accept, params=params
        )
        return json.loads(raw) if raw else None

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> bytes:
        url = self.server + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", accept)
        req.add_header("User-Agent", self.user_agent)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=self.timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, e.read(), method=method, path=path) from None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("POST", path, body=body, **kw)

    def put(self, path: str, body: Any, **kw: Any) -> Any:
        return self.request("PUT", path, body=body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def patch(
        self, path: str, body: Any, *, content_type: str = "application/merge-patch+json", **kw: Any
    ) -> Any:
        return self.request("PATCH", path, body=body, content_type=content_type, **kw)

    # -- discovery-driven helpers ---------------------------------------------------------------------------

    def resource(self, api_version: str, kind: str, *, refresh: bool = False) -> ResourceInfo:
        """Find a kind's plural and scope through discovery (cached; ``refresh`` after installing CRDs)."""
        key = (api_version, kind)
        if refresh or key not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for r in self.get(path).get("resources", []):
                if "/" not in r["name"]:
                    self._discovery[(api_version, r["kind"])] = ResourceInfo(
                        api_version, r["name"], r["namespaced"]
                    )
        try:
            return self._discovery[key]
        except KeyError:
            raise LookupError(f"the server does not serve kind {kind} in {api_version}") from None

    def path_of(self, obj: JSON, *, with_name: bool = True) -> str:
        meta = obj.get("metadata", {})
        info = self.resource(obj["apiVersion"], obj["kind"])
        return info.path(namespace=meta.get("namespace"), name=meta.get("name") if with_name else None)

    def apply(self, obj: JSON) -> JSON:
        """Create the object, or replace it if it exists (last write wins; harness use only)."""
        try:
            return self.post(self.path_of(obj, with_name=False), obj)
        except ApiError as e:
            if e.code != 409:
                raise
        current = self.get(self.path_of(obj))
        obj = json.loads(json.dumps(obj))
        obj.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self.put(self.path_of(obj), obj)

    def table(self, api_version: str, kind: str, *, namespace: str | None = None) -> JSON:
        """A server-side ``meta.k8s.io/v1`` Table for a kind (what ``kubectl get`` prints)."""
        info = self.resource(api_version, kind)
        return self.get(info.path(namespace=namespace), accept="application/json;as=Table;v=v1;g=meta.k8s.io")


def format_table(table: JSON, *, namespaced: bool = False, wide: bool = False) -> str:
    """Render a server-side Table like ``kubectl get`` does: priority-0 columns, upper-case headers."""
    cols = [
        (i, c) for i, c in enumerate(table.get("columnDefinitions", [])) if wide or c.get("priority", 0) == 0
    ]
    header = (["NAMESPACE"] if namespaced else []) + [c["name"].upper() for _, c in cols]
    rows = []
    for row in table.get("rows", []):
        cells = ["<none>" if row["cells"][i] in (None, "") else str(row["cells"][i]) for i, _ in cols]
        if namespaced:
            cells.insert(0, row.get("object", {}).get("metadata", {}).get("namespace", ""))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )
