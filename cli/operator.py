"""``dorgu operator``: the composition root — resolves cluster access, picks components, runs the supervisor.

Usage:
  dorgu operator [options]

Options:
  --kubeconfig=FILE             Kubeconfig (default: in-cluster config in a pod, else $KUBECONFIG or
                                ~/.kube/config).
  --context=NAME                Kubeconfig context.
  --components=LIST             Comma-separated components to run [default: applicationpersona].
                                Known: applicationpersona, clusterpersona, argocd, webhook, websocket.
  --identity=ID                 This replica's identity for leader election (default: $POD_NAME or the
                                hostname).
  --leader-elect=BOOL           Elect a leader per controller with Leases [default: true].
  --lease-namespace=NS          Namespace of the Leases (default: the pod's namespace, else the
                                kubeconfig context's, else dorgu-system).
  --metrics-bind-address=ADDR   Health and metrics server, host:port [default: 0.0.0.0:8080].
  --prometheus-url=URL          Prometheus for resource baselines (empty: the feature is off).
  --revalidate-interval=SEC     Re-validate every persona this often [default: 60].
  --heartbeat-interval=SEC      Rewrite an unchanged status at most this often [default: 1800].
  --workers=N                   Concurrent reconciles per controller (coroutines waiting on the API
                                server; 16 keeps the pipe full at no real cost) [default: 16].
  --webhook-mode=MODE           advisory or enforcing; a namespace's dorgu.io/webhook-mode label overrides
                                it [default: advisory].
  --webhook-bind-address=ADDR   The admission webhook's HTTPS server, host:port [default: 0.0.0.0:9443].
  --webhook-url=URL             Have the API server call this URL instead of the dorgu-webhook Service
                                (an operator outside the cluster: local runs, tests, the demo).
  --webhook-ip-addresses=LIST   IP addresses for the webhook's serving certificate (comma-separated).
  --websocket-addr=ADDR         The WebSocket server, host:port (":9090": all addresses) [default: :9090].
  --ws-auth=MODE                WebSocket clients: token (TokenReview + SubjectAccessReview) or none (local
                                development only) [default: token].
  --component-options=JSON      Extra options for every component, a JSON object (tuning and tests, e.g.
                                {"lease_duration_s": 15}).
  --log-level=LEVEL             debug, info, warning or error [default: info].
  --config FILE                 Ignored (accepted by every command).
  --no-color                    Ignored (accepted by every command).
  -h --help                     Show this help.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

# Component name → the coroutine its child process runs. The supervisor in dorgu/ never imports these;
# this table is the only place that knows them.
COMPONENTS: dict[str, str] = {
    "applicationpersona": "controllers.applicationpersona:run",
    "clusterpersona": "controllers.clusterpersona:run",
    "argocd": "controllers.argocd:run",
    "webhook": "webhook.server:run",
    "websocket": "webhook.websocket:run",
}


class UsageError(Exception):
    """A flag value that cannot be used (exit code 2)."""


def _bool(value: str, flag: str) -> bool:
    v = value.strip().lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise UsageError(f"{flag} must be true or false, not {value!r}")


def _positive(value: str, flag: str) -> float:
    try:
        f = float(value)
    except ValueError:
        raise UsageError(f"{flag} must be a number of seconds, not {value!r}") from None
    if f <= 0:
        raise UsageError(f"{flag} must be positive")
    return f


def _available(target: str) -> bool:
    module = target.split(":", 1)[0]
    return importlib.util.find_spec(module) is not None


def _serving_options(args: dict[str, Any]) -> dict[str, Any]:
    """The webhook's and the WebSocket server's options (their components read these keys)."""
    mode = str(args.get("--webhook-mode") or "advisory")
    if mode not in ("advisory", "enforcing"):
        raise UsageError(f"--webhook-mode must be advisory or enforcing, not {mode!r}")
    host, _, port = str(args.get("--webhook-bind-address") or "0.0.0.0:9443").rpartition(":")
    if not port.isdigit():
        raise UsageError("--webhook-bind-address must be host:port")
    ws_addr = str(args.get("--websocket-addr") or ":9090")
    if not ws_addr.rpartition(":")[2].isdigit():
        raise UsageError("--websocket-addr must be host:port or :port")
    ws_auth = str(args.get("--ws-auth") or "token")
    if ws_auth not in ("token", "none"):
        raise UsageError(f"--ws-auth must be token or none, not {ws_auth!r}")
    out: dict[str, Any] = {
        "webhook_mode": mode,
        "webhook_host": host or "0.0.0.0",
        "webhook_port": int(port),
        "websocket_addr": ws_addr,
        "ws_auth": ws_auth,
    }
    if args.get("--webhook-url"):
        out["webhook_url"] = str(args["--webhook-url"])
    if args.get("--webhook-ip-addresses"):
        out["webhook_ip_addresses"] = str(args["--webhook-ip-addresses"])
    return out


def plan(args: dict[str, Any]) -> tuple[list[Any], Any, dict[str, Any]]:
    """Turn the command line into (component specs, supervisor settings, extra) without starting anything."""
    from dorgu.runtime.component import ComponentSpec
    from dorgu.runtime.supervisor import SupervisorSettings

    names = [n.strip() for n in str(args["--components"]).split(",") if n.strip()]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        raise UsageError(f"unknown component(s) {', '.join(unknown)}; known: {', '.join(COMPONENTS)}")
    missing = [n for n in names if not _available(COMPONENTS[n])]
    if missing:
        raise UsageError(f"component(s) {', '.join(missing)} are not part of this build")
    identity = args["--identity"] or os.environ.get("POD_NAME") or socket.gethostname()
    host, _, port = str(args["--metrics-bind-address"]).rpartition(":")
    if not port.isdigit():
        raise UsageError("--metrics-bind-address must be host:port")
    options: dict[str, Any] = {
        "leader_elect": _bool(str(args["--leader-elect"]), "--leader-elect"),
        "lease_namespace": args["--lease-namespace"],
        "prometheus_url": args["--prometheus-url"] or os.environ.get("DORGU_PROMETHEUS_URL") or None,
        "revalidate_interval_s": _positive(str(args["--revalidate-interval"]), "--revalidate-interval"),
        "heartbeat_interval_s": _positive(str(args["--heartbeat-interval"]), "--heartbeat-interval"),
        "workers": int(_positive(str(args["--workers"]), "--workers")),
        **_serving_options(args),
    }
    extra = args.get("--component-options")
    if extra:
        try:
            more = json.loads(str(extra))
        except ValueError as e:
            raise UsageError(f"--component-options must be a JSON object: {e}") from None
        if not isinstance(more, dict):
            raise UsageError("--component-options must be a JSON object")
        options.update(more)
    specs = [ComponentSpec(name=n, target=COMPONENTS[n], options=dict(options)) for n in names]
    settings = SupervisorSettings(
        metrics_host=host or "0.0.0.0",
        metrics_port=int(port),
        identity=identity,
        log_level=args["--log-level"],
    )
    return specs, settings, options


def run(argv: list[str]) -> int:
    from docopt import docopt

    return run_with(docopt(__doc__ or "", argv=argv))


def run_with(args: dict[str, Any]) -> int:
    """Run the operator until SIGTERM/SIGINT; the exit code."""
    from dorgu.runtime.kubeconfig import ConfigError, resolve
    from dorgu.runtime.supervisor import run_supervisor

    try:
        specs, settings, options = plan(args)
    except UsageError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    run_dir = Path(tempfile.mkdtemp(prefix="dorgu-operator-"))
    try:
        access = resolve(kubeconfig=args["--kubeconfig"], context=args["--context"], run_dir=run_dir,
                         user_agent=f"dorgu-operator/{settings.identity}")  # fmt: skip
    except ConfigError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    lease_ns = options["lease_namespace"] or access.namespace or "dorgu-system"
    for spec in specs:
        spec.options["lease_namespace"] = lease_ns
    return run_supervisor(
        specs, access.connection, settings, background=[access.refresher.run] if access.refresher else []
    )
