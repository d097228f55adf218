"""``persona status|list`` and ``cluster status`` read from the API server, as ``kubectl get`` does.

The default source of these commands (the operator's WebSocket is used only when an operator URL is named:
``cli.live``). Rules kept:

* **Columns are the server's.** The table is the API server's ``meta.k8s.io/v1`` Table for the kind, which
  it builds from the CRD's ``additionalPrinterColumns`` (NAME, TYPE, TIER, PHASE, HEALTH, AGE for a persona;
  NAME, ENVIRONMENT, PHASE, NODES, APPS, AGE for a ClusterPersona) — the columns ``kubectl get`` prints,
  priority-0 only, upper-case headers, ``<none>`` for an empty cell, NAMESPACE first with ``-A``.
* **``-o json|yaml``** print the object as the server holds it; a list is kubectl's ``kind: List``.
* **Errors are the server's.** An API error prints ``Error from server (<reason>): <message>`` on stderr
  and exits 1 (``Error from server (NotFound): applicationpersonas.dorgu.io "x" not found``); a kind the
  server does not serve says that the CRD is not installed.
* **Namespace**: ``-n`` > the global config's ``defaults.namespace`` > the kubeconfig context's > ``default``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from cli.errors import FAILURE, Failure, InputError
from cli.kube import cluster_access, run_with_client
from cli.output import Output
from cli.settings import load_global
from dorgu.domain.resources import APPLICATION_PERSONAS, CLUSTER_PERSONAS
from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import ApiError, NotFound
from dorgu.runtime.resource import Resource

TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io, application/json"
"""What kubectl asks for: a server-side Table, else plain JSON."""


@dataclass(frozen=True, kw_only=True)
class Query:
    """One ``get``: a named object or a list."""

    resource: Resource
    """ApplicationPersonas or ClusterPersonas."""
    name: str | None
    """The object's name; None: list."""
    namespace: str | None
    """The namespace (None: all namespaces, or a cluster-scoped kind)."""
    label_selector: str | None = None
    """List only objects whose labels match (server-side)."""
    output: str = "table"
    """``table``, ``json`` or ``yaml``."""


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What the server answered: the Table (``table`` output) or the object/list."""

    table: dict[str, Any] | None = None
    obj: dict[str, Any] | None = None


class ServerError(Failure):
    """An API error, printed as kubectl prints it (no ``Error:`` prefix of ours)."""

    def __init__(self, e: ApiError) -> None:
        super().__init__(f"Error from server ({e.reason or e.code}): {e.message}")


def _default_namespace(context_namespace: str | None) -> str:
    try:
        configured = load_global().defaults.namespace
    except InputError:
        configured = ""
    return configured or context_namespace or "default"


def run(args: dict[str, Any], out: Output) -> int:
    """``persona status|list`` / ``cluster status`` against the API server of the kubeconfig."""
    access = cluster_access(kubeconfig=args["--kubeconfig"], context=args["--context"])
    fmt = args["--output"]
    if args["cluster"]:
        name = args["NAME"] or args["--name"]
        query = Query(resource=CLUSTER_PERSONAS, name=name, namespace=None, output=fmt)
    else:
        all_ns = bool(args["--all-namespaces"]) and not args["status"]
        namespace = None if all_ns else args["--namespace"] or _default_namespace(access.namespace)
        query = Query(
            resource=APPLICATION_PERSONAS, name=args["NAME"] if args["status"] else None, namespace=namespace,
            label_selector=args["--selector"] if args["list"] else None, output=fmt,
        )  # fmt: skip
    try:
        answer = run_with_client(access.connection, lambda c: fetch(c, query), timeout_s=_timeout(args))
    except ServerError as e:
        print(str(e), file=sys.stderr)
        return FAILURE
    return show(query, answer, out)


def _timeout(args: dict[str, Any]) -> float:
    try:
        return float(args["--timeout"])
    except ValueError:
        raise InputError(f"--timeout must be a number of seconds, not {args['--timeout']!r}") from None


async def fetch(client: ApiClient, q: Query) -> Answer:
    """GET the object or list (a Table when the output is a table); API errors become :class:`ServerError`."""
    params = {"labelSelector": q.label_selector} if q.label_selector else {}
    path = q.resource.path(namespace=q.namespace, name=q.name)
    try:
        if q.output == "table":
            if q.name and q.resource is APPLICATION_PERSONAS:  # status also shows issues and conditions
                params["includeObject"] = "Object"
            raw = await client.request("GET", path, params=params, accept=TABLE_ACCEPT)
            return Answer(table=msgspec.json.decode(raw))
        raw = await client.request("GET", path, params=params)
        return Answer(obj=msgspec.json.decode(raw))
    except NotFound as e:
        served = await client.served(
            group=q.resource.group, version=q.resource.version, plural=q.resource.plural
        )
        if not served:
            raise Failure(
                f"{q.resource.kind} CRD is not installed on this cluster. Install the Dorgu Operator first"
            ) from None
        raise ServerError(e) from None
    except ApiError as e:
        raise ServerError(e) from None


def show(q: Query, a: Answer, out: Output) -> int:
    if a.obj is not None:
        data = a.obj
        if q.name is None:  # kubectl prints a list as a plain List of the items
            data = {"apiVersion": "v1", "items": data.get("items") or [], "kind": "List",
                    "metadata": {"resourceVersion": ""}}  # fmt: skip
        if q.output == "json":
            out.print(json.dumps(data, indent=4))
        else:
            out.out.write(yaml.safe_dump(data, sort_keys=True))
        return 0
    table = a.table or {}
    rows = table.get("rows") or []
    if not rows:
        if q.resource is CLUSTER_PERSONAS:
            out.info("No ClusterPersona resources found. Create one with: dorgu cluster init --name <name>")
        elif q.namespace:
            print(f"No resources found in {q.namespace} namespace.", file=sys.stderr)
        else:
            print("No resources found", file=sys.stderr)
        return 0
    out.print(render_table(table, with_namespace=q.resource.namespaced and q.namespace is None))
    if q.name and q.resource is APPLICATION_PERSONAS:
        from cli.live import persona_details

        persona_details((rows[0].get("object") or {}), out)
    return 0


def render_table(table: dict[str, Any], *, with_namespace: bool) -> str:
    """A server-side Table as ``kubectl get`` prints it: priority-0 columns, upper-case headers, columns
    three spaces apart, ``<none>`` for an empty cell, NAMESPACE first when listing all namespaces."""
    cols = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or []) if not c.get("priority")]
    header = (["NAMESPACE"] if with_namespace else []) + [str(c.get("name", "")).upper() for _, c in cols]
    lines = []
    for row in table.get("rows") or []:
        cells = row.get("cells") or []
        line = ["<none>" if i >= len(cells) or cells[i] in (None, "") else str(cells[i]) for i, _ in cols]
        if with_namespace:
            line.insert(0, str(((row.get("object") or {}).get("metadata") or {}).get("namespace", "")))
        lines.append(line)
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *lines]
    )
