"""Live commands: persona watch/status/list, cluster status, watch, sync.

`persona status`, `persona list` and `cluster status` read from the API server of the kubeconfig, as
`kubectl get` does (the CRDs' printer columns; no operator needed), unless an operator URL is named
(--operator-url, DORGU_OPERATOR_URL or `operator.url` in the global config): then they ask the operator's
WebSocket, like the other live commands, which always do.

Usage:
  dorgu persona watch [NAME] [-n NS | -A] [-l SELECTOR] [-o FORMAT] [options]
  dorgu persona status NAME [-n NS] [-o FORMAT] [options]
  dorgu persona list [-n NS | -A] [-l SELECTOR] [-o FORMAT] [options]
  dorgu cluster status [NAME] [-o FORMAT] [options]
  dorgu watch (personas|cluster|events) [-n NS] [options]
  dorgu sync status [options]
  dorgu sync pull [-n NS] [options]

Options:
  -n NS --namespace=NS      Namespace (default: the global config's defaults.namespace, else the
                            kubeconfig context's (API server reads), else "default"; for `watch` and
                            `sync pull`: all namespaces).
  -A --all-namespaces       All namespaces.
  --name=NAME               cluster status: the ClusterPersona (the positional NAME wins).
  -l SELECTOR --selector=SELECTOR
                            Only personas whose labels match (server-side), e.g. tier=critical.
  -o FORMAT --output=FORMAT
                            table, json or yaml [default: table]. `persona watch`: a table redrawn in
                            place on a terminal, one line (table) or one object (json/yaml) per change
                            when piped.
  --operator-url=URL        The operator's WebSocket URL (also: DORGU_OPERATOR_URL, or `operator.url` in
                            the global config; else ws://localhost:9090/ws).
  --token=TOKEN             Bearer token (also: DORGU_OPERATOR_TOKEN, or `operator.token` in the global
                            config; else the kubeconfig's).
  --kubeconfig=FILE         Kubeconfig: the API server to read from, or the operator's token (default:
                            $KUBECONFIG or ~/.kube/config).
  --context=NAME            Kubeconfig context.
  --operator-ca=FILE        CA bundle for a wss:// operator (also: --ca-file, DORGU_OPERATOR_CA, else
                            $XDG_CONFIG_HOME/dorgu/operator-ca.crt when it exists; else the system's).
  --ca-file=FILE            Same as --operator-ca.
  --tls-server-name=NAME    The name the operator's certificate must carry when the URL's host differs
                            (kubectl port-forward: dorgu-websocket.dorgu-system.svc).
  --insecure-skip-tls-verify
                            Do not verify a wss:// operator's certificate.
  --insecure-cleartext      Send the token over plain ws:// to an address that is not loopback (refused
                            otherwise: anyone on the path could read it).
  --json-frames             Speak JSON text frames instead of msgpack (what a client that offers no
                            subprotocol gets).
  --timeout=SEC             Request timeout in seconds [default: 30].
  --config FILE             Workspace config file (accepted for every command).
  --no-color                No colours.
  -h --help                 Show this help.

Exit codes: 0 success (a watch ended with Ctrl-C included), 1 the operator or the API server cannot be
reached or answered with an error (`Error from server (NotFound): ...` as kubectl prints it), 2 bad flags
(a token for a non-loopback ws:// URL without --insecure-cleartext included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.parse
from datetime import datetime
from typing import Any

import msgspec
import yaml
from docopt import docopt

from cli.errors import Failure, InputError
from cli.output import Output
from cli.settings import GlobalOperator, global_config_path, load_global
from cli.ws_client import ConnectError, Follower, OperatorConnection, RemoteError, WsClientSettings
from dorgu.domain import protocol as p
from dorgu.domain.types import ApplicationPersona
from webhook.ws.settings import is_loopback

DEFAULT_URL = "ws://localhost:9090/ws"
FORMATS = ("table", "json", "yaml")


def _global_operator() -> GlobalOperator:
    """The global config's ``operator.*`` section (a malformed file is an error naming it)."""
    return load_global().operator


def _default_namespace() -> str:
    try:
        return load_global().defaults.namespace or "default"
    except InputError:
        return "default"


def _kube_token(kubeconfig: str | None, context: str | None) -> str | None:
    """The kubeconfig's bearer token for the operator (None when there is none)."""
    from cli.kube import connection, kubeconfig_available

    if not kubeconfig_available(kubeconfig):
        return None
    try:
        conn = connection(kubeconfig=kubeconfig, context=context)
    except Failure:
        return None
    if conn.token:
        return conn.token
    if conn.token_file:
        with contextlib.suppress(OSError), open(conn.token_file) as fh:
            return fh.read().strip() or None
    return None


def operator_ca(args: dict[str, Any]) -> str | None:
    """The CA bundle for a ``wss://`` operator: --operator-ca / --ca-file > DORGU_OPERATOR_CA > the
    documented place ``operator-ca.crt`` beside the global config (when it exists) > None (the system's)."""
    given = args.get("--operator-ca") or args.get("--ca-file") or os.environ.get("DORGU_OPERATOR_CA")
    if given:
        if not os.path.isfile(given):
            raise InputError(f"--operator-ca: no CA bundle at {given}")
        return str(given)
    default = global_config_path().with_name("operator-ca.crt")
    return str(default) if default.is_file() else None


def _cleartext_check(url: str, token: str | None, *, allowed: bool) -> None:
    """A bearer token goes over plain ws:// only to this machine, unless the user says otherwise."""
    if token is None or allowed or not url.startswith("ws://"):
        return
    host = urllib.parse.urlsplit(url).hostname or ""
    if not is_loopback(host):
        raise InputError(
            f"refusing to send a bearer token in cleartext to {url}: use wss:// (the operator serves it by "
            "default; --operator-ca FILE names its CA), or pass --insecure-cleartext if every network "
            "between here and there is trusted"
        )


def client_settings(args: dict[str, Any]) -> WsClientSettings:
    """Operator URL: flag > DORGU_OPERATOR_URL > global config ``operator.url`` > ws://localhost:9090/ws.
    Token: flag > DORGU_OPERATOR_TOKEN > global config ``operator.token`` > the kubeconfig's. A token is
    never sent over plain ``ws://`` to an address that is not loopback unless ``--insecure-cleartext``."""
    op = _global_operator()
    url = args["--operator-url"] or os.environ.get("DORGU_OPERATOR_URL") or op.url or DEFAULT_URL
    if not url.startswith(("ws://", "wss://")):
        raise InputError(f"--operator-url must be a ws:// or wss:// URL, not {url!r}")
    token = args["--token"] or os.environ.get("DORGU_OPERATOR_TOKEN") or op.token or None
    if token is None:
        token = _kube_token(args["--kubeconfig"], args["--context"])
    _cleartext_check(url, token, allowed=bool(args.get("--insecure-cleartext")))
    try:
        timeout = float(args["--timeout"])
    except ValueError:
        raise InputError(f"--timeout must be a number of seconds, not {args['--timeout']!r}") from None
    return WsClientSettings(
        url=url, token=token, msgpack=not args["--json-frames"], ca_file=operator_ca(args),
        insecure=bool(args["--insecure-skip-tls-verify"]), request_timeout_s=timeout,
        server_hostname=args.get("--tls-server-name") or None,
    )  # fmt: skip


def reads_api_server(args: dict[str, Any]) -> bool:
    """``persona status|list`` and ``cluster status`` read from the API server (the kubeconfig's), as
    kubectl does, unless an operator URL is named: --operator-url, DORGU_OPERATOR_URL or the global
    config's ``operator.url``. The other live commands always need the operator."""
    gets = (args["persona"] and (args["status"] or args["list"])) or (args["cluster"] and args["status"])
    if not gets:
        return False
    return not (args["--operator-url"] or os.environ.get("DORGU_OPERATOR_URL") or _global_operator().url)


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    fmt = args["--output"]
    if fmt not in FORMATS:
        raise InputError(f"--output must be one of {', '.join(FORMATS)}, not {fmt!r}")
    out = Output(no_color=bool(args["--no-color"]))
    if reads_api_server(args):
        from cli import kubeget

        return kubeget.run(args, out)
    settings = client_settings(args)
    try:
        if args["persona"] and args["watch"]:
            return _run_watch(lambda stop: persona_watch(args, settings, out, stop))
        if args["watch"]:
            return _run_watch(lambda stop: legacy_watch(args, settings, out, stop))
        return asyncio.run(_oneshot(args, settings, out))
    except ConnectError as e:
        raise Failure(str(e)) from None
    except RemoteError as e:
        raise Failure(f"the operator answered {e}") from None


def _run_watch(make: Any) -> int:
    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await make(stop)
        return 0

    return asyncio.run(main())


def _namespace(args: dict[str, Any], *, all_default: bool = False) -> str | None:
    if args["--all-namespaces"]:
        return None
    if args["--namespace"]:
        return str(args["--namespace"])
    return None if all_default else _default_namespace()


# --------------------------------------------------------------------------- persona watch


def _hms(ts: str | None = None) -> str:
    if ts:
        with contextlib.suppress(ValueError):
            return (
                datetime.fromisoformat(ts.replace("Z", "+00:00")[:26] + "+00:00")
                .astimezone()
                .strftime("%H:%M:%S")
            )
    return datetime.now().strftime("%H:%M:%S")


def _val(item: dict[str, Any]) -> str:
    v = item.get("validation") or {}
    if v.get("passed") is None:
        return "-"
    return "passed" if v["passed"] else f"{v.get('errorCount', 0)} error(s)"


COLUMNS = ("NAMESPACE", "NAME", "TYPE", "TIER", "PHASE", "HEALTH", "VALIDATION")


def _row(item: dict[str, Any]) -> list[str]:
    return [
        item.get("namespace") or "", item.get("name") or "", item.get("type") or "", item.get("tier") or "",
        item.get("phase") or "-", item.get("health") or "-", _val(item),
    ]  # fmt: skip


def table(rows: list[list[str]], header: tuple[str, ...] = COLUMNS) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["   ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


async def persona_watch(
    args: dict[str, Any], settings: WsClientSettings, out: Output, stop: asyncio.Event
) -> None:
    fmt = args["--output"]
    live = fmt == "table" and out.out.isatty()
    ns = _namespace(args)

    def redraw() -> None:
        rows = [_row(follower.state[k]) for k in sorted(follower.state)]
        text = table(rows) if rows else "No ApplicationPersonas found"
        out.out.write("\x1b[H\x1b[2J" + text + f"\n\n{_hms()}  {settings.url}  (Ctrl+C to stop)\n")
        out.out.flush()

    def emit(kind: str, item: dict[str, Any]) -> None:
        if live:
            return
        if fmt == "json":
            out.out.write(json.dumps({"eventType": kind, **item}, sort_keys=True) + "\n")
        elif fmt == "yaml":
            out.out.write("---\n" + yaml.safe_dump({"eventType": kind, **item}, sort_keys=True))
        else:
            ns_name = f"{item.get('namespace')}/{item.get('name')}"
            out.out.write(
                f"[{_hms()}] {kind:<8} {ns_name}  phase={item.get('phase') or '-'} "
                f"health={item.get('health') or '-'} validation={_val(item)}\n"
            )
        out.out.flush()

    def status(kind: str, msg: str) -> None:
        print(f"{'⚠' if kind == 'warning' else 'ℹ'} {msg}", file=sys.stderr, flush=True)

    follower = Follower(
        settings, p.TOPIC_PERSONAS, namespace=ns, name=args["NAME"], label_selector=args["--selector"],
        emit=emit, status=status,
    )  # fmt: skip
    if live:
        orig = follower.emit

        def emit_live(kind: str, item: dict[str, Any]) -> None:
            orig(kind, item)
            redraw()

        follower.emit = emit_live
    await follower.run(stop)


# --------------------------------------------------------------------------- `watch` (one line per event)


async def legacy_watch(
    args: dict[str, Any], settings: WsClientSettings, out: Output, stop: asyncio.Event
) -> None:
    topic = "personas" if args["personas"] else "cluster" if args["cluster"] else "events"
    ns = args["--namespace"] or None

    def emit(kind: str, item: dict[str, Any]) -> None:
        t = f"[{_hms()}]"
        if topic == "personas":
            who = f"{item.get('namespace')}/{item.get('name')}"
            line = {
                p.CREATED: f"✓ {who} created (phase: {item.get('phase') or ''})",
                p.UPDATED: f"↻ {who} updated (phase: {item.get('phase') or ''}, "
                f"health: {item.get('health') or ''})",
                p.DELETED: f"✗ {who} deleted",
            }.get(kind, f"{who}: {kind}")
        elif topic == "cluster":
            n = item.get("name")
            line = {
                p.UPDATED: f"↻ Cluster '{n}' updated (phase: {item.get('phase') or ''}, "
                f"nodes: {item.get('nodeCount') or 0}, apps: {item.get('applicationCount') or 0})",
                p.NODE_ADDED: f"+ Node added to cluster '{n}' (total: {item.get('nodeCount') or 0})",
                p.NODE_REMOVED: f"- Node removed from cluster '{n}' (total: {item.get('nodeCount') or 0})",
            }.get(kind, f"Cluster '{n}': {kind}")
        else:
            line = json.dumps({"eventType": kind, **item}, sort_keys=True)
        out.print(f"{t} {line}")
        out.out.flush()

    def status(kind: str, msg: str) -> None:
        (out.warning if kind == "warning" else out.info)(msg)

    follower = Follower(settings, topic, namespace=ns, emit=emit, status=status)
    what = "validation events" if topic == "events" else f"{topic} updates"
    conn = OperatorConnection(settings)
    await conn.open()  # fail fast with a clear message, before printing "Connected"
    await conn.close()
    out.success("Connected to Dorgu Operator")
    out.info(f"Watching {what}... (Ctrl+C to stop)")
    out.print()
    out.out.flush()
    await follower.run(stop)
    out.info("Stopping watch...")


# --------------------------------------------------------------------------- one-shot commands


def _dump(obj: Any, fmt: str, out: Output) -> None:
    data = msgspec.to_builtins(obj)
    if fmt == "json":
        out.print(json.dumps(data, indent=2, sort_keys=True))
    else:
        out.out.write(yaml.safe_dump(data, sort_keys=False))


class ReplyShapeError(Failure):
    """The operator answered, but not in this protocol's shape (an older, Go, dorgu-operator, say)."""

    def __init__(self, what: str, url: str, e: msgspec.ValidationError) -> None:
        super().__init__(
            f"the operator at {url} answered the {what} request in a shape this dorgu does not understand "
            f"({e}); it may be an older dorgu-operator (the Go one answers a persona get with a list). Leave "
            "--operator-url (and operator.url, DORGU_OPERATOR_URL) out to read from the API server instead"
        )


def _reply(payload: Any, type_: type[Any], what: str, settings: WsClientSettings) -> Any:
    """The reply converted to its msgspec type; another shape is a :class:`ReplyShapeError`, never a
    ``KeyError`` from indexing a dict that is not what was asked for."""
    try:
        return msgspec.convert(payload, type=type_)
    except msgspec.ValidationError as e:
        raise ReplyShapeError(what, settings.url, e) from None


async def _oneshot(args: dict[str, Any], settings: WsClientSettings, out: Output) -> int:
    fmt = args["--output"]
    if args["sync"]:
        return await _sync(args, settings, out)
    async with OperatorConnection(settings) as conn:
        if args["persona"] and args["status"]:
            ns = _namespace(args) or "default"
            try:
                raw = await conn.request(
                    p.TOPIC_PERSONAS, {"action": "get", "namespace": ns, "name": args["NAME"]}
                )
            except RemoteError as e:
                if e.code == p.NOT_FOUND:
                    raise Failure(e.message) from None
                raise
            got: p.PersonaGot = _reply(raw, p.PersonaGot, "persona get", settings)
            persona = _reply(got.persona, ApplicationPersona, "persona get", settings)
            if fmt != "table":
                _dump(got.persona, fmt, out)
                return 0
            _persona_status(msgspec.to_builtins(persona), out)
            return 0
        if args["persona"] and args["list"]:
            payload = {"namespace": _namespace(args), "labelSelector": args["--selector"]}
            raw = await conn.request(p.TOPIC_PERSONAS, {k: v for k, v in payload.items() if v})
            items = _reply(raw, p.PersonaList, "persona list", settings).personas
            if fmt != "table":
                _dump(items, fmt, out)
            elif not items:
                out.dim("No ApplicationPersonas found")
            else:
                header = ("NAMESPACE", "NAME", "APP", "TYPE", "TIER", "PHASE", "HEALTH")
                rows = [[i.namespace, i.name, i.app_name, i.type, i.tier, i.phase, i.health] for i in items]
                out.print(table([[c or "-" for c in r] for r in rows], header))
            return 0
        # cluster status
        name = args["NAME"] or args["--name"]
        try:
            raw = await conn.request(p.TOPIC_CLUSTER, {"name": name} if name else {})
        except RemoteError as e:
            if e.code == p.NOT_FOUND and not name:
                out.info(
                    "No ClusterPersona resources found. Create one with: dorgu cluster init --name <name>"
                )
                return 0
            if e.code == p.NOT_FOUND:
                raise Failure(e.message) from None
            raise
        cluster = msgspec.to_builtins(_reply(raw, p.ClusterSummary, "cluster", settings))
        if fmt != "table":
            _dump(cluster, fmt, out)
            return 0
        _cluster_block(cluster, out, title=f"ClusterPersona: {cluster.get('name')}")
        return 0


def _persona_status(ap: dict[str, Any], out: Output) -> None:
    meta, spec, st = ap.get("metadata") or {}, ap.get("spec") or {}, ap.get("status") or {}
    out.header(f"ApplicationPersona: {meta.get('name')}")
    if not st:
        out.dim("  No status available yet. The Dorgu Operator may not have reconciled this persona.")
        return
    health = st.get("health") or {}
    val = st.get("validation") or {}
    lines = [
        ("Namespace", meta.get("namespace")), ("App", spec.get("name")), ("Type", spec.get("type")),
        ("Tier", spec.get("tier")), ("Phase", st.get("phase")), ("Health", health.get("status")),
        ("Health message", health.get("message")),
        ("Current image", (st.get("deployments") or {}).get("current")),
        ("Validation", None if val.get("passed") is None else ("passed" if val["passed"] else "failed")),
        ("Last checked", val.get("lastChecked")),
    ]  # fmt: skip
    for label, value in lines:
        if value not in (None, ""):
            out.print(f"  {label + ':':<19}{value}")
    persona_details(ap, out)


def persona_details(ap: dict[str, Any], out: Output) -> None:
    """A persona's validation issues and conditions (nothing when it has none)."""
    val = (ap.get("status") or {}).get("validation") or {}
    conds = (ap.get("status") or {}).get("conditions") or []
    issues = val.get("issues") or []
    if issues:
        out.print()
        out.info(f"Validation issues ({len(issues)})")
        for i in issues:
            where = f" [{i.get('deployment')}]" if i.get("deployment") else ""
            out.print(f"  • {i.get('severity')}{where} {i.get('field') or ''}: {i.get('message')}")
            if i.get("suggestion"):
                out.dim(f"      → {i['suggestion']}")
    if conds:
        out.print()
        out.info("Conditions")
        for c in conds:
            out.print(
                f"  {c.get('type')}: {c.get('status')} ({c.get('reason')}) {c.get('message') or ''}".rstrip()
            )


def _cluster_block(c: dict[str, Any], out: Output, *, title: str, addons: bool = True) -> None:
    out.header(title)
    out.info("Cluster Overview")
    for label, key in (
        ("Name", "name"), ("Environment", "environment"), ("Phase", "phase"),
        ("Kubernetes Version", "kubernetesVersion"), ("Platform", "platform"), ("Nodes", "nodeCount"),
        ("Applications", "applicationCount"),
    ):  # fmt: skip
        out.print(f"  {label + ':':<20}{c.get(key) if c.get(key) not in (None, '') else '-'}")
    if addons and c.get("addons"):
        out.print()
        out.info("Discovered Add-ons")
        for a in c["addons"]:
            out.print(f"  • {a}")


async def _sync(args: dict[str, Any], settings: WsClientSettings, out: Output) -> int:
    out.info(f"Connecting to operator at {settings.url}...")
    async with OperatorConnection(settings) as conn:  # an operator that cannot be reached is exit 1
        out.success("Connected to Dorgu Operator")
        out.print()
        if args["status"]:
            try:
                c = await conn.request(p.TOPIC_CLUSTER, {})
                _cluster_block(c, out, title="Cluster Status")
            except RemoteError as e:
                out.warning(f"Could not get cluster info: {e}")
            out.print()
            out.header("Personas Summary")
            try:
                items = (await conn.request(p.TOPIC_PERSONAS, {})).get("personas") or []
            except RemoteError as e:
                out.warning(f"Could not list personas: {e}")
                items = None
            if items is not None and not items:
                out.dim("  No ApplicationPersonas found")
            elif items:
                out.print(f"  {'Total:':<19}{len(items)}")
                phases: dict[str, int] = {}
                for i in items:
                    phases[i.get("phase") or "Unknown"] = phases.get(i.get("phase") or "Unknown", 0) + 1
                for ph in sorted(phases):
                    out.print(f"  {ph + ':':<19}{phases[ph]}")
            out.print()
            out.success("Sync status complete")
            return 0
        ns = args["--namespace"] or None
        out.info("Pulling ApplicationPersonas...")
        try:
            items = (await conn.request(p.TOPIC_PERSONAS, {"namespace": ns} if ns else {})).get(
                "personas"
            ) or []
        except RemoteError as e:
            raise Failure(f"failed to list personas: {e}") from None
        if not items:
            out.dim("No ApplicationPersonas found")
        else:
            out.header("ApplicationPersonas")
            header = ("NAMESPACE", "NAME", "TYPE", "TIER", "PHASE", "HEALTH")
            keys = ("namespace", "appName", "type", "tier", "phase", "health")
            out.print(table([[i.get(k) or "-" for k in keys] for i in items], header))
        out.print()
        out.info("Pulling ClusterPersona...")
        try:
            c = await conn.request(p.TOPIC_CLUSTER, {})
            _cluster_block(c, out, title="ClusterPersona", addons=False)
        except RemoteError as e:
            out.warning(f"Could not get cluster info: {e}")
        out.print()
        out.success(f"Pulled {len(items)} personas")
        return 0
