"""Usage:
  dorgu persona apply [PATH] [options]

Analyze the application in PATH (default: the current directory), generate its ApplicationPersona and
server-side apply it (field manager `dorgu-cli`) through dorgu's own client — no kubectl needed. Prints a
diff of what changes.

Options:
  -n NS --namespace=NS   Namespace of the persona (default: global defaults.namespace, else "default").
  --name=NAME            Application name (default: app.name in .dorgu.yaml, else the directory name).
  --dry-run=MODE         `server`: the API server validates and defaults the persona and reports the diff,
                         nothing is changed; `client`: print the persona, contact no cluster.
  --create-namespace     Create the namespace when it does not exist (default: fail).
  --kubeconfig=FILE      Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).
  --context=CTX          Kubeconfig context.
  --llm-provider=P       LLM provider (openai, anthropic, gemini, ollama); off by default.
  --config=FILE          Workspace config file (default: .dorgu.yaml in the current directory).
  --no-color             No colours (also: NO_COLOR).
  -h --help              Show this help.

Exit codes: 0 success, 1 failure (cluster unreachable, namespace missing, rejected by the API server),
2 usage or input error.
"""

from __future__ import annotations

import difflib
import sys
from typing import Any

import msgspec
from docopt import docopt

from cli import kube
from cli.errors import Failure, InputError
from cli.generator import build_persona, persona_yaml
from cli.generator.persona import persona_dict
from cli.generator.yamlio import dump
from cli.output import Output
from cli.pipeline import prepare
from cli.spinner import Spinner
from dorgu.domain.resources import APPLICATION_PERSONAS
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import ApiError, Invalid, NotFound
from dorgu.runtime.resource import NAMESPACES

_DROP_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)


def comparable(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What the diff shows: apiVersion, kind, name/namespace/labels/annotations and spec."""
    if not obj:
        return {}
    meta = obj.get("metadata") or {}
    keep: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("labels"):
        keep["labels"] = meta["labels"]
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _DROP_ANNOTATIONS}
    if ann:
        keep["annotations"] = ann
    return {
        "apiVersion": obj.get("apiVersion"),
        "kind": obj.get("kind"),
        "metadata": keep,
        "spec": obj.get("spec"),
    }


def diff(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    a = dump(comparable(before), sort_keys=True).splitlines() if before else []
    b = dump(comparable(after), sort_keys=True).splitlines()
    return list(difflib.unified_diff(a, b, fromfile="live", tofile="applied", lineterm="", n=3))


async def _apply(
    client: ApiClient, body: dict[str, Any], ns: str, *, dry_run: bool, create_ns: bool, out: Output
) -> tuple[dict[str, Any] | None, dict[str, Any], bool]:
    """(live before, result, namespace_created). Raises Failure with a message that says what to do."""
    if not await client.served(group="dorgu.io", version="v1", plural="applicationpersonas"):
        raise Failure(
            "the ApplicationPersona CRD (applicationpersonas.dorgu.io) is not installed on this cluster; "
            "install dorgu's CRDs first (deploy/crds/)"
        )
    ns_created = False
    try:
        await client.get(NAMESPACES, ns)
    except NotFound:
        if not create_ns:
            raise Failure(
                f"namespace {ns!r} does not exist; create it (kubectl create namespace {ns}), "
                "pass --create-namespace, or choose another with --namespace"
            ) from None
        ns_obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        params = {"fieldManager": kube.FIELD_MANAGER, "force": "true"} | (
            {"dryRun": "All"} if dry_run else {}
        )
        await client.request(
            "PATCH",
            NAMESPACES.path(name=ns),
            params=params,
            body=ns_obj,
            content_type="application/apply-patch+yaml",
        )
        ns_created = True
        if dry_run:  # the namespace does not exist, so the persona cannot be dry-run inside it
            return None, body, True
        out.success(f"Namespace {ns} created")
    name = body["metadata"]["name"]
    try:
        before = msgspec.json.decode(
            await client.request("GET", APPLICATION_PERSONAS.path(namespace=ns, name=name))
        )
    except NotFound:
        before = None
    params = {"fieldManager": kube.FIELD_MANAGER, "force": "true"} | ({"dryRun": "All"} if dry_run else {})
    raw = await client.request(
        "PATCH",
        APPLICATION_PERSONAS.path(namespace=ns, name=name),
        params=params,
        body=body,
        content_type="application/apply-patch+yaml",
    )
    return before, msgspec.json.decode(raw), ns_created


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    mode = args["--dry-run"]
    if mode not in (None, "server", "client"):
        raise InputError(f"--dry-run must be 'server' or 'client', not {mode!r}")
    out = Output(no_color=args["--no-color"], out=sys.stderr if mode == "client" else None)
    with Spinner("Analyzing application...") as spinner:
        prep = prepare(args, out, spinner=spinner)
        spinner.update("Generating persona...")
        persona: ApplicationPersona = build_persona(prep.ctx)
    if mode == "client":
        sys.stdout.write(persona_yaml(persona))
        return 0
    ns = prep.ctx.namespace
    body = persona_dict(persona)
    name = body["metadata"]["name"]
    conn = kube.connection(kubeconfig=args["--kubeconfig"], context=args["--context"])
    suffix = " (server dry run: nothing is changed)" if mode == "server" else ""
    out.info(f"Applying ApplicationPersona {ns}/{name} to {conn.server}{suffix}...")
    try:
        before, after, _ = kube.run_with_client(
            conn,
            lambda c: _apply(
                c, body, ns, dry_run=mode == "server", create_ns=args["--create-namespace"], out=out
            ),
        )
    except Invalid as e:
        causes = "; ".join(f"{c.get('field', '?')}: {c.get('message', '')}" for c in e.causes) or e.message
        raise Failure(f"the API server rejected the persona: {causes}") from e
    except ApiError as e:
        raise Failure(f"applying the persona failed: {e.code} {e.reason}: {e.message}") from e
    lines = diff(before, after)
    if lines:
        for line in lines:
            out.diff_line(line)
    else:
        out.dim("  (no changes)")
    verb = "unchanged" if not lines else ("created" if before is None else "configured")
    if mode == "server":
        out.success(f"ApplicationPersona {ns}/{name} would be {verb} (server dry run)")
    else:
        out.success(f"ApplicationPersona {ns}/{name} {verb}")
    return 0
