"""Usage:
  dorgu cluster init --name=NAME [options]

Create (server-side apply, field manager `dorgu-cli`) the cluster's ClusterPersona.

Options:
  --name=NAME          Name of the ClusterPersona (required).
  --environment=ENV    development, staging, production or sandbox [default: development].
  --dry-run            Print the ClusterPersona; contact no cluster.
  --kubeconfig=FILE    Kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster).
  --context=CTX        Kubeconfig context.
  --config=FILE        Ignored (accepted by every command).
  --no-color           No colours (also: NO_COLOR).
  -h --help            Show this help.
"""

from __future__ import annotations

import sys

import msgspec
from docopt import docopt

from cli import kube
from cli.analyzer import dns_name
from cli.errors import Failure, InputError
from cli.generator.yamlio import dump
from cli.output import Output
from dorgu.domain import types as t
from dorgu.domain.resources import CLUSTER_PERSONAS
from dorgu.runtime.errors import ApiError
from dorgu.runtime.meta import ObjectMeta

ENVIRONMENTS = ("development", "staging", "production", "sandbox")


def cluster_persona(name: str, environment: str) -> t.ClusterPersona:
    return t.ClusterPersona(
        api_version=t.API_VERSION,
        kind="ClusterPersona",
        metadata=ObjectMeta(name=name),
        spec=t.ClusterPersonaSpec(
            name=name,
            description="Kubernetes cluster managed by Dorgu",
            environment=environment,
            policies=t.ClusterPolicies(
                security=t.ClusterSecurityPolicy(
                    enforce_non_root=True, disallow_privileged=True, pod_security_standard="baseline"
                )
            ),
            conventions=t.ClusterConventions(
                required_labels=["app.kubernetes.io/name", "app.kubernetes.io/version"]
            ),
            defaults=t.ClusterDefaults(namespace="default"),
        ),
    )


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    out = Output(no_color=args["--no-color"])
    name, env = args["--name"], args["--environment"]
    if dns_name(name) != name:
        raise InputError(f"--name {name!r} is not a valid Kubernetes name (try {dns_name(name)!r})")
    if env not in ENVIRONMENTS:
        raise InputError(f"--environment must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    body = msgspec.to_builtins(cluster_persona(name, env))
    if args["--dry-run"]:
        sys.stdout.write(dump(body, sort_keys=False))
        return 0
    conn = kube.connection(kubeconfig=args["--kubeconfig"], context=args["--context"])
    out.info("Creating ClusterPersona...")

    async def apply(client):  # noqa: ANN001, ANN202
        return await client.apply(CLUSTER_PERSONAS, body, name=name, field_manager=kube.FIELD_MANAGER)

    try:
        kube.run_with_client(conn, apply)
    except ApiError as e:
        raise Failure(f"applying the ClusterPersona failed: {e.code} {e.reason}: {e.message}") from e
    out.success(f"ClusterPersona '{name}' created successfully")
    out.info(
        f"The Dorgu Operator will now discover cluster state. Check status with: dorgu cluster status {name}"
    )
    return 0
