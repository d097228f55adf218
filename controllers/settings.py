"""The controller components' settings: one typed struct per component, the only place their defaults live.

A component's ``run(ctx)`` converts ``ctx.options`` to its struct once (``msgspec.convert``); an unknown key
or a value of the wrong type is an error naming it. ``dorgu operator`` converts them too, before anything
starts, to refuse a bad ``--component-options`` with a usage error. That is why these structs live apart
from their controllers: this module imports msgspec and nothing else, so the supervisor process can check
options without loading any controller.

Every controller takes the Lease options (:class:`LeaseOptions`) and a worker count
(:class:`ControllerOptions`); the flat option names are those of the fields (``lease_duration_s``, not
``lease.duration_s``), as ``--component-options`` and the command-line flags spell them.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class LeaseOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A controller's Lease. Durations are client-go's (15 s / 10 s / 2 s); the Leases of all controllers
    form one group, spread over the replicas and rebalanced."""

    leader_elect: bool = True
    """Run only while holding the Lease (``--leader-elect``); false: run on every replica, no Lease."""
    lease_name: str | None = None
    """The Lease's name (None: the controller's own, e.g. ``dorgu-applicationpersona``)."""
    lease_namespace: str | None = None
    """The Lease's namespace (None or empty: ``dorgu-system``; ``dorgu operator`` always fills it in, from
    ``--lease-namespace``, the pod's namespace or the kubeconfig context's)."""
    lease_duration_s: float = 15.0
    """How long a Lease that is not renewed stays valid for the other replicas."""
    renew_deadline_s: float = 10.0
    """How long the leader keeps retrying a renewal before it gives the leadership up."""
    retry_period_s: float = 2.0
    """Interval between attempts to acquire or renew."""
    spread_delay_s: float = 2.0
    """Per other Lease of the group this replica holds, wait this long before contending for one more."""
    rebalance: bool = True
    """A replica holding more than its fair share of the group's Leases hands one to a replica holding
    fewer (set alike on every replica)."""
    presence_period_s: float | None = None
    """How often a waiting replica renews its presence Lease (None: a third of ``lease_duration_s``)."""
    rebalance_period_s: float | None = None
    """How often a leader checks the group's balance (None: a third of ``lease_duration_s``)."""


class ControllerOptions(LeaseOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What every controller takes: its Lease and its worker count."""

    workers: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Concurrent reconciles (``--workers``): coroutines waiting on the API server; 16 keeps the pipe full
    at no real cost. One object is never reconciled by two workers at once."""
    namespaces: str | tuple[str, ...] = ()
    """The namespaces the operator works in (``--namespaces``; a list, or one comma-separated string);
    empty: every namespace. Namespaced kinds are listed and watched in each of them, never cluster-wide
    (namespaced RBAC suffices), so objects elsewhere are neither seen nor written."""


class PersonaSettings(ControllerOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ApplicationPersona controller (component ``applicationpersona``; tests shorten the intervals)."""

    revalidate_interval_s: float = 60.0
    """Re-validate every persona this often, jittered ±10 % (``--revalidate-interval``)."""
    heartbeat_interval_s: float = 1800.0
    """Rewrite an unchanged status (``lastChecked``) at most this often (``--heartbeat-interval``)."""
    prometheus_url: str | None = None
    """Prometheus for resource baselines (``--prometheus-url``); None turns the feature off (silently)."""
    baseline_refresh_s: float = 600.0
    """Refresh each persona's baseline this often."""
    baseline_check_s: float = 15.0
    """How often the baseline loop looks for personas that are due."""
    prometheus_timeout_s: float = 10.0
    """Timeout of one Prometheus query."""
    shard_index: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """Set by ``dorgu operator --shards`` on each shard process of a replica: this process is shard
    ``<identity>-<shard_index>`` of the ring (None: unsharded, one Lease for the whole controller)."""
    sharder_workers: Annotated[int, msgspec.Meta(ge=1)] = 16
    """Sharded: concurrent label writes of the sharder. Keep it well under the client's connection pool
    (64, watches included): 64 in flight starved the sharder's own Lease renewals in a bench run."""
    sharder_settle_s: float = 5.0
    """Sharded: after the set of live shards changes, the sharder waits until it has been stable this long
    before assigning or moving personas."""


class ClusterPersonaSettings(ControllerOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The ClusterPersona controller (component ``clusterpersona``; tests shorten the intervals)."""

    discovery_interval_s: float = 300.0
    """Re-discover every ClusterPersona this often (jittered ±10 %)."""
    node_debounce_s: float = 2.0
    """After a Node change, wait this long (coalescing further changes) before discovering."""
    bootstrap: bool = True
    """Create a ClusterPersona at start-up (as leader) when none exists."""
    bootstrap_name: str = "cluster"
    """``metadata.name`` and ``spec.name`` of the bootstrapped ClusterPersona."""
    bootstrap_environment: str | None = None
    """``spec.environment`` of the bootstrapped ClusterPersona (None: the CRD default, development)."""


class ArgoCDSettings(ControllerOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The Argo CD controller (component ``argocd``; tests shorten the intervals)."""

    crd_poll_interval_s: float = 10.0
    """While the Application CRD is not served, ask discovery again this often."""
