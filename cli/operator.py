"""``dorgu operator``: the composition root — resolves cluster access, picks components, runs the supervisor.

Usage:
  dorgu operator [options]

Options:
  --kubeconfig=FILE             Kubeconfig (default: in-cluster config in a pod, else $KUBECONFIG or
                                ~/.kube/config).
  --context=NAME                Kubeconfig context.
  --components=LIST             Comma-separated components to run [default: applicationpersona].
                                Known: applicationpersona, clusterpersona, argocd, webhook, websocket.
  --shards=N                    Run the ApplicationPersona controller as a ring of shards: N shard
                                processes on this replica ("auto": one per replica), each reconciling the
                                personas a sharder assigns to it; "off": unsharded, one Lease
                                (default: off).
  --identity=ID                 This replica's identity for leader election (default: $POD_NAME or the
                                hostname).
  --leader-elect=BOOL           Elect a leader per controller with Leases (default: true).
  --namespaces=NS[,NS]          Work only in these namespaces (default or empty: all): every component
                                lists and watches namespaced kinds in each of them, never cluster-wide
                                (namespaced RBAC: deploy/overlays/namespaced/); the webhook admits other
                                namespaces' Deployments unchecked; the WebSocket serves these only.
  --lease-namespace=NS          Namespace of the Leases (default: the pod's namespace, else the
                                kubeconfig context's, else dorgu-system).
  --metrics-bind-address=ADDR   Health and metrics server, host:port [default: 0.0.0.0:8080].
  --prometheus-url=URL          Prometheus for resource baselines (empty: the feature is off).
  --revalidate-interval=SEC     Re-validate every persona this often (default: 60).
  --heartbeat-interval=SEC      Rewrite an unchanged status at most this often (default: 1800).
  --workers=N                   Concurrent reconciles per controller, coroutines waiting on the API
                                server (default: 16, which keeps the pipe full at no real cost).
  --webhook-mode=MODE           advisory or enforcing; a namespace's dorgu.io/webhook-mode label overrides
                                it (default: advisory).
  --webhook-bind-address=ADDR   The admission webhook's HTTPS server, host:port (default: 0.0.0.0:9443).
  --webhook-url=URL             Have the API server call this URL instead of the dorgu-webhook Service
                                (an operator outside the cluster: local runs, tests, the demo).
  --webhook-ip-addresses=LIST   IP addresses for the webhook's serving certificate (comma-separated).
  --websocket-addr=ADDR         The WebSocket server, host:port (":9090": all addresses) (default: :9090).
  --ws-auth=MODE                WebSocket clients: token (TokenReview + SubjectAccessReview) or none (local
                                development only; needs a loopback --websocket-addr) (default: token).
  --ws-token-audiences=LIST     Audiences a WebSocket client's token must be issued for, comma-separated,
                                e.g. dorgu (`kubectl create token SA --audience dorgu`); empty: any token
                                the API server accepts (default: empty).
  --component-options=JSON      More options, a JSON object (tuning and tests, e.g. {"lease_duration_s":
                                15}). Each component gets the keys its settings struct has
                                (controllers.settings, webhook.settings, webhook.ws.settings); a key no
                                chosen component has, or a bad value, is an error.
  --log-level=LEVEL             debug, info, warning or error [default: info].
  --config FILE                 Ignored (accepted by every command).
  --no-color                    Ignored (accepted by every command).
  -h --help                     Show this help.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import json
import os
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cli.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Component:
    """One component ``dorgu operator`` can run."""

    target: str
    """``module:function``: the coroutine its child process runs."""
    settings: str
    """``module:Struct``: the msgspec struct its ``run(ctx)`` converts ``ctx.options`` to. Only these light
    modules are imported here, to check the options before anything starts; never the components."""


# Component name → what its child process runs. The supervisor in dorgu/ never imports these; this table is
# the only place that knows them.
COMPONENTS: dict[str, Component] = {
    "applicationpersona": Component(
        target="controllers.applicationpersona:run", settings="controllers.settings:PersonaSettings"
    ),
    "clusterpersona": Component(
        target="controllers.clusterpersona:run", settings="controllers.settings:ClusterPersonaSettings"
    ),
    "argocd": Component(target="controllers.argocd:run", settings="controllers.settings:ArgoCDSettings"),
    "webhook": Component(target="webhook.server:run", settings="webhook.settings:WebhookOptions"),
    "websocket": Component(target="webhook.ws.server:run", settings="webhook.ws.settings:WebSocketOptions"),
}


def _bool(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise InputError(f"{flag} must be true or false, not {value!r}")


def _positive(value: str, flag: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise InputError(f"{flag} must be a number of seconds, not {value!r}") from None
    if f <= 0:
        raise InputError(f"{flag} must be positive")
    return f


SHARD_TARGET = "controllers.applicationpersona_shard:run"
SHARDER_TARGET = "controllers.applicationpersona_shard:run_sharder"


def _shards(value: Any) -> int | None:
    """``--shards``: None or "off" (unsharded), "auto" (one shard process per replica) or a positive count."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in ("off", ""):
        return None
    if v == "auto":
        return 1
    if not v.isdigit() or int(v) < 1:
        raise InputError(f"--shards must be auto, off or a positive number, not {value!r}")
    return int(v)


def _available(target: str) -> bool:
    module = target.split(":", 1)[0]
    return importlib.util.find_spec(module) is not None


def settings_type(name: str) -> type[Any]:
    """The settings struct of component ``name``."""
    module, _, attr = COMPONENTS[name].settings.partition(":")
    return getattr(importlib.import_module(module), attr)


def option_names(name: str) -> frozenset[str]:
    """The option keys component ``name`` takes (its settings struct's fields)."""
    import msgspec

    return frozenset(f.encode_name for f in msgspec.structs.fields(settings_type(name)))


def _flag_options(args: dict[str, Any]) -> dict[str, Any]:
    """The options the flags set: only flags given (a flag left out leaves the component's default, which
    lives in its settings struct), except ``lease_namespace``, always present (None: resolved at start)."""
    out: dict[str, Any] = {"lease_namespace": args.get("--lease-namespace") or None}
    if args.get("--leader-elect") is not None:
        out["leader_elect"] = _bool(str(args["--leader-elect"]), "--leader-elect")
    prometheus = args.get("--prometheus-url") or os.environ.get("DORGU_PROMETHEUS_URL")
    if prometheus:
        out["prometheus_url"] = str(prometheus)
    if args.get("--revalidate-interval") is not None:
        out["revalidate_interval_s"] = _positive(str(args["--revalidate-interval"]), "--revalidate-interval")
    if args.get("--heartbeat-interval") is not None:
        out["heartbeat_interval_s"] = _positive(str(args["--heartbeat-interval"]), "--heartbeat-interval")
    if args.get("--workers") is not None:
        out["workers"] = int(_positive(str(args["--workers"]), "--workers"))
    if args.get("--webhook-mode") is not None:
        mode = str(args["--webhook-mode"])
        if mode not in ("advisory", "enforcing"):
            raise InputError(f"--webhook-mode must be advisory or enforcing, not {mode!r}")
        out["webhook_mode"] = mode
    if args.get("--webhook-bind-address") is not None:
        host, _, port = str(args["--webhook-bind-address"]).rpartition(":")
        if not port.isdigit():
            raise InputError("--webhook-bind-address must be host:port")
        out["webhook_host"] = host or "0.0.0.0"
        out["webhook_port"] = int(port)
    if args.get("--webhook-url"):
        out["webhook_url"] = str(args["--webhook-url"])
    if args.get("--webhook-ip-addresses"):
        out["webhook_ip_addresses"] = str(args["--webhook-ip-addresses"])
    if args.get("--websocket-addr") is not None:
        ws_addr = str(args["--websocket-addr"])
        if not ws_addr.rpartition(":")[2].isdigit():
            raise InputError("--websocket-addr must be host:port or :port")
        out["websocket_addr"] = ws_addr
    if args.get("--ws-auth") is not None:
        ws_auth = str(args["--ws-auth"])
        if ws_auth not in ("token", "none"):
            raise InputError(f"--ws-auth must be token or none, not {ws_auth!r}")
        out["ws_auth"] = ws_auth
    if args.get("--namespaces"):  # empty (deploy/'s ConfigMap default): every namespace
        out["namespaces"] = _namespaces(str(args["--namespaces"]))
    if args.get("--ws-token-audiences"):
        out["ws_token_audiences"] = str(args["--ws-token-audiences"])
    return out


def _namespaces(value: str) -> str:
    """``--namespaces``: comma-separated namespace names (RFC 1123 labels; blanks dropped, repeats once)."""
    from cli.names import check_label

    names = [n.strip() for n in value.split(",") if n.strip()]
    for n in names:
        check_label(n, what="--namespaces: namespace")
    return ",".join(dict.fromkeys(names))


def _extra_options(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        more = json.loads(text)
    except ValueError as e:
        raise InputError(f"--component-options must be a JSON object: {e}") from None
    if not isinstance(more, dict):
        raise InputError("--component-options must be a JSON object")
    return more


def component_options(
    names: list[str], *, flags: dict[str, Any], extra: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each component's options: of the flags' and ``--component-options``' (which win), the keys its
    settings struct takes, checked by converting them to it as its child will. Every key of ``extra`` must
    be taken by at least one of ``names``: a key none of them takes is a typo or meant for a component that
    does not run, and either way would change nothing."""
    import msgspec

    taken = {n: option_names(n) for n in names}
    for key in extra:
        if any(key in keys for keys in taken.values()):
            continue
        others = [n for n in COMPONENTS if n not in names and key in option_names(n)]
        if others:
            hint = f"it is an option of {', '.join(others)}, which this run does not include"
        else:
            close = difflib.get_close_matches(key, sorted(set().union(*taken.values())), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "no component takes it"
        raise InputError(f"--component-options: unknown option {key!r} for {', '.join(names)} ({hint})")
    out: dict[str, dict[str, Any]] = {}
    for n in names:
        options = {k: v for k, v in {**flags, **extra}.items() if k in taken[n]}
        try:
            msgspec.convert(options, type=settings_type(n))
        except msgspec.ValidationError as e:
            raise InputError(f"--component-options: {n}: {e}") from None
        out[n] = options
    return out


def plan(args: dict[str, Any]) -> tuple[list[Any], Any, str | None]:
    """Turn the command line into (component specs, supervisor settings, the Lease namespace given) without
    starting anything; a bad flag or option raises :class:`InputError`."""
    from dorgu.runtime.component import ComponentSpec
    from dorgu.runtime.supervisor import SupervisorSettings

    names = [n.strip() for n in str(args["--components"]).split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise InputError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    missing = [n for n in names if not _available(COMPONENTS[n].target)]
    if missing:
        raise InputError(f"component(s) {', '.join(missing)} are not part of this build")
    identity = args["--identity"] or os.environ.get("POD_NAME") or socket.gethostname()
    host, _, port = str(args["--metrics-bind-address"]).rpartition(":")
    if not port.isdigit():
        raise InputError("--metrics-bind-address must be host:port")
    flags = _flag_options(args)
    extra = _extra_options(args.get("--component-options"))
    options = component_options(names, flags=flags, extra=extra)
    specs = [ComponentSpec(name=n, target=COMPONENTS[n].target, options=options[n]) for n in names]
    shards = _shards(args.get("--shards"))
    if shards is not None:
        if "applicationpersona" not in names:
            raise InputError(
                "--shards shards the applicationpersona component, which this run does not include"
            )
        if options["applicationpersona"].get("leader_elect") is False:
            raise InputError(
                "--shards needs leader election (each shard holds a Lease): drop --leader-elect=false"
            )
        i = names.index("applicationpersona")
        base = options["applicationpersona"]
        ring = [
            ComponentSpec(name=f"applicationpersona-shard-{n}", target=SHARD_TARGET,
                          options={**base, "shard_index": n})
            for n in range(shards)
        ]  # fmt: skip
        ring.append(
            ComponentSpec(name="applicationpersona-sharder", target=SHARDER_TARGET, options=dict(base))
        )
        specs[i : i + 1] = ring
    settings = SupervisorSettings(
        metrics_host=host or "0.0.0.0",
        metrics_port=int(port),
        identity=identity,
        log_level=args["--log-level"],
    )
    return specs, settings, extra.get("lease_namespace", flags["lease_namespace"])


def run(argv: list[str]) -> int:
    from docopt import docopt

    return run_with(docopt(__doc__ or "", argv=argv))


def run_with(args: dict[str, Any]) -> int:
    """Run the operator until SIGTERM/SIGINT; the exit code."""
    from dorgu.runtime.kubeconfig import ConfigError, resolve
    from dorgu.runtime.supervisor import run_supervisor

    try:
        specs, settings, lease_namespace = plan(args)
    except InputError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="dorgu-operator-"))
    try:
        access = resolve(kubeconfig=args["--kubeconfig"], context=args["--context"], run_dir=run_dir,
                         user_agent=f"dorgu-operator/{settings.identity}")  # fmt: skip
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    # The Leases' namespace: the flag (or option), else the pod's or the kubeconfig context's namespace.
    lease_ns = lease_namespace or access.namespace or "dorgu-system"
    for spec in specs:
        if "lease_namespace" in spec.options:
            spec.options["lease_namespace"] = lease_ns
    return run_supervisor(
        specs, access.connection, settings, background=[access.refresher.run] if access.refresher else []
    )
