"""Rebalancing Leases over replicas: the plan (pure), and real :class:`LeaderElector` candidates converging on
the injected clock.

The convergence tests run many candidates through chosen start orders, delays, a late starter and a restart,
and must be *deterministic*: the order in which requests of concurrent candidates reach a server, and when
their watches fire, is exactly what a real API server cannot be made to repeat. So these tests use
:class:`LeaseServer`, an in-memory stand-in for the Leases API (create/get/update with resourceVersion
conflicts, list by label, watch by name) — a fake, allowed here for that reason only. The same code runs
against the real server in ``tests/e2e/test_replicas.py`` (three operator replicas start together and end
with one controller each) and in ``bench/leases.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dorgu.runtime.clock import FakeClock
from dorgu.runtime.errors import AlreadyExists, Conflict, NotFound
from dorgu.runtime.leaderelection import (
    LeaderElectionSettings,
    LeaderElector,
    LeadershipHandedOver,
    LeadershipLost,
)
from dorgu.runtime.leasebalance import fair_share, plan_handovers
from dorgu.runtime.resource import LEASES

NS = "dorgu-system"
LEASE_S, RENEW_S, RETRY_S = 15.0, 10.0, 2.0  # the operator's defaults
PERIOD_S = LEASE_S / 3  # presence and rebalance periods (their defaults)
BOUND_S = LEASE_S + 2 * PERIOD_S + 2 * PERIOD_S
"""The bound stated in the leader election's docstring, from the last candidate starting to contend."""
RESTART_S = 1.0
"""A handed-over process is started afresh (its supervisor restarts it) after this long."""
SLACK_S = 2 * RETRY_S * 1.2
"""Jittered retry periods between the steps the bound counts (simulated time, not the machine's)."""


# -- the plan ------------------------------------------------------------------------------------------------


def test_fair_share() -> None:
    assert fair_share(leases=3, live=3) == 1
    assert fair_share(leases=3, live=2) == 2
    assert fair_share(leases=4, live=3) == 2
    assert fair_share(leases=3, live=0) == 3


def test_two_on_one_replica_and_none_on_another_moves_one() -> None:
    holders = {"ap": "r1", "cp": "r1", "argo": "r0"}
    ready = {lease: {"r0", "r1", "r2"} for lease in holders}
    # r1 keeps "ap" (first by name) and hands "cp" to r2, the only one below the share.
    assert plan_handovers(holders=holders, alive={"r2"}, ready=ready) == {"cp": "r2"}


def test_no_move_without_a_ready_receiver_or_within_the_share() -> None:
    holders = {"ap": "r1", "cp": "r1", "argo": "r0"}
    assert plan_handovers(holders=holders, alive={"r2"}, ready={"ap": {"r2"}}) == {}  # r2 not ready for cp
    assert plan_handovers(holders=holders, alive=set(), ready={"cp": {"r0"}}) == {}  # share 2: balanced
    # Four Leases, three replicas: share 2; 2/2/0 is within it (no move: hysteresis), 3/1/0 is not.
    four = {"a": "r1", "b": "r1", "c": "r2", "d": "r2"}
    assert plan_handovers(holders=four, alive={"r3"}, ready={k: {"r3"} for k in four}) == {}
    three_one = {"a": "r1", "b": "r1", "c": "r1", "d": "r2"}
    assert plan_handovers(holders=three_one, alive={"r3"}, ready={k: {"r3"} for k in four}) == {"c": "r3"}


def test_one_replica_holding_all_gives_each_surplus_lease_to_a_different_receiver() -> None:
    holders = {"a": "r1", "b": "r1", "c": "r1"}
    ready = {k: {"r1", "r2", "r3"} for k in holders}
    assert plan_handovers(holders=holders, alive={"r2", "r3"}, ready=ready) == {"b": "r2", "c": "r3"}


@settings(max_examples=300, deadline=None)
@given(
    n_leases=st.integers(1, 7),
    n_ids=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_applying_plans_converges_and_never_moves_a_lease_back(n_leases: int, n_ids: int, seed: int) -> None:
    """From any assignment, applying the plan of each snapshot ends within the share after at most
    ``leases`` moves, and the sum of squares of the holdings falls with every round."""
    rng = random.Random(seed)
    ids = [f"r{i}" for i in range(n_ids)]
    holders = {f"l{i}": rng.choice(ids) for i in range(n_leases)}
    ready = {lease: set(ids) for lease in holders}
    share = fair_share(leases=n_leases, live=n_ids)
    moves = 0

    def squares() -> int:
        counts = [sum(1 for h in holders.values() if h == i) for i in ids]
        return sum(c * c for c in counts)

    while plan := plan_handovers(holders=holders, alive=set(ids), ready=ready):
        before = squares()
        for lease, receiver in plan.items():
            holders[lease] = receiver
            moves += 1
        assert squares() <= before - 2
        assert moves <= n_leases
    assert max(sum(1 for h in holders.values() if h == i) for i in ids) <= share


# -- an in-memory Leases API (see the module docstring for why) ----------------------------------------------


def _err(cls: type[Exception], method: str, path: str) -> Exception:
    return cls(code=409 if cls is not NotFound else 404, reason=cls.__name__, message="", method=method,
               path=path)  # fmt: skip


@dataclass
class LeaseServer:
    """Leases of one namespace with resourceVersions, label-selected lists and watches by name."""

    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    rv: itertools.count = field(default_factory=lambda: itertools.count(1))
    watchers: list[tuple[str, asyncio.Queue[bytes]]] = field(default_factory=list)

    def _store(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        name = obj["metadata"]["name"]
        event = "MODIFIED" if name in self.objects else "ADDED"
        self.objects[name] = obj
        line = json.dumps({"type": event, "object": obj}).encode() + b"\n"
        for watched, q in self.watchers:
            if watched == name:
                q.put_nowait(line)
        return copy.deepcopy(obj)


class Process:
    """One candidate process's client: its own view of the server; killed, it gets no further answers."""

    def __init__(self, server: LeaseServer) -> None:
        self.server = server
        self.dead = False
        self.write_guard: Callable[[str, str], None] | None = None

    async def _hop(self, method: str, path: str) -> None:
        await asyncio.sleep(0)
        if self.dead:
            raise ConnectionResetError(f"{method} {path}: the process is dead")

    async def get(self, resource: Any, name: str, *, namespace: str | None = None) -> Any:
        path = LEASES.path(namespace=namespace, name=name)
        await self._hop("GET", path)
        if name not in self.server.objects:
            raise _err(NotFound, "GET", path)
        return copy.deepcopy(self.server.objects[name])

    async def create(self, resource: Any, obj: Any, *, namespace: str | None = None) -> Any:
        path = LEASES.path(namespace=namespace)
        await self._hop("POST", path)
        if obj["metadata"]["name"] in self.server.objects:
            raise _err(AlreadyExists, "POST", path)
        return self.server._store(obj)

    async def replace(self, resource: Any, name: str, obj: Any, *, namespace: str | None = None) -> Any:
        path = LEASES.path(namespace=namespace, name=name)
        await self._hop("PUT", path)
        current = self.server.objects.get(name)
        if current is None:
            raise _err(NotFound, "PUT", path)
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _err(Conflict, "PUT", path)
        return self.server._store(obj)

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None) -> bytes:
        await self._hop(method, path)
        key, _, value = (params or {})["labelSelector"].partition("=")
        items = [
            o for o in self.server.objects.values() if (o["metadata"].get("labels") or {}).get(key) == value
        ]
        return json.dumps({"items": items}).encode()

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, params: Mapping[str, str], read_timeout_s: float
    ) -> AsyncIterator[Any]:
        await self._hop("WATCH", path)
        name = params["fieldSelector"].removeprefix("metadata.name=")
        q: asyncio.Queue[bytes] = asyncio.Queue()
        entry = (name, q)
        self.server.watchers.append(entry)

        class _Content:
            async def iter_any(self) -> AsyncIterator[bytes]:
                while True:
                    yield await q.get()

        class _Response:
            content = _Content()

        try:
            yield _Response()
        finally:
            self.server.watchers.remove(entry)


# -- candidates on the injected clock ------------------------------------------------------------------------


class Cluster:
    """Replicas (identities), each running one candidate process per Lease, on one FakeClock; with
    ``rebalance`` false the candidates only spread (no hand-overs)."""

    def __init__(self, leases: list[str], *, seed: int = 0, rebalance: bool = True) -> None:
        self.clock = FakeClock()
        self.rebalance = rebalance
        self.server = LeaseServer()
        self.leases = leases
        self.rng = random.Random(seed)
        self.tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.procs: dict[tuple[str, str], tuple[Process, LeaderElector]] = {}
        self.handovers = 0
        self.violations: list[str] = []

    def settings(self, identity: str, lease: str) -> LeaderElectionSettings:
        return LeaderElectionSettings(
            name=lease, namespace=NS, identity=identity, lease_duration_s=LEASE_S, renew_deadline_s=RENEW_S,
            retry_period_s=RETRY_S, spread_delay_s=2.0, rebalance=self.rebalance,
        )  # fmt: skip

    def start(self, identity: str) -> None:
        for lease in self.leases:
            self.tasks[(identity, lease)] = asyncio.ensure_future(self._process(identity, lease))

    async def _process(self, identity: str, lease: str) -> None:
        """A supervisor's view of one component: run, and start afresh after a hand-over."""
        while True:
            proc = Process(self.server)
            elector = LeaderElector(
                proc, self.settings(identity, lease), clock=self.clock,  # type: ignore[arg-type]
                rng=random.Random(self.rng.random()),
            )  # fmt: skip
            self.procs[(identity, lease)] = (proc, elector)
            try:
                await elector.run(asyncio.Event().wait)
            except LeadershipHandedOver:
                self.handovers += 1
            except LeadershipLost:
                pass
            await self.clock.sleep(RESTART_S)

    async def kill(self, identity: str) -> None:
        """kill -9 of a replica: nothing it sends arrives any more (no release, no presence cleared)."""
        for lease in self.leases:
            proc, _ = self.procs[(identity, lease)]
            proc.dead = True
            task = self.tasks.pop((identity, lease))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def holders(self) -> dict[str, str]:
        return {
            lease: (self.server.objects.get(lease, {}).get("spec") or {}).get("holderIdentity") or ""
            for lease in self.leases
        }

    def check_one_leader(self) -> None:
        for lease in self.leases:
            valid = [i for (i, ls), (_, e) in self.procs.items() if ls == lease and e.is_valid()]
            if len(valid) > 1:
                self.violations.append(f"{lease} led validly by {valid} at {self.clock.monotonic()}")

    async def run_for(self, seconds: float, *, step: float = 0.1) -> None:
        for _ in range(round(seconds / step)):
            await self.clock.advance(step)
            for _ in range(10):
                await asyncio.sleep(0)
            self.check_one_leader()

    def balanced(self, identities: list[str]) -> bool:
        held = self.holders()
        share = fair_share(leases=len(self.leases), live=len(identities))
        counts = [sum(1 for h in held.values() if h == i) for i in identities]
        return all(held.values()) and max(counts) <= share

    async def time_to_balance(self, identities: list[str], *, limit: float) -> float:
        waited = 0.0
        while not self.balanced(identities):
            if waited > limit:
                raise AssertionError(f"not balanced after {waited:.1f} s: {self.holders()}")
            await self.run_for(0.5)
            waited += 0.5
        return waited

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


LEASE_NAMES = ["dorgu-applicationpersona", "dorgu-argocd", "dorgu-clusterpersona"]


def run_cluster(scenario: Callable[[Cluster], Awaitable[None]], *, seed: int, rebalance: bool = True) -> None:
    """Run ``scenario`` on a fresh :class:`Cluster` of LEASE_NAMES in an event loop of its own, cancel its
    candidates, then check that no Lease ever had two valid leaders."""

    async def main() -> None:
        c = Cluster(LEASE_NAMES, seed=seed, rebalance=rebalance)
        try:
            await scenario(c)
        finally:
            await c.close()
        assert not c.violations, c.violations

    asyncio.run(main())


@pytest.mark.parametrize("order", list(itertools.permutations(["r0", "r1", "r2"])))
@pytest.mark.parametrize("gaps", [(0.0, 0.0), (0.3, 0.3), (1.0, 7.0), (20.0, 0.5)])
def test_three_replicas_converge_to_one_lease_each(order: tuple[str, ...], gaps: tuple[float, float]) -> None:
    async def scenario(c: Cluster) -> None:
        c.start(order[0])
        await c.run_for(gaps[0])
        c.start(order[1])
        await c.run_for(gaps[1])
        c.start(order[2])
        took = await c.time_to_balance(list(order), limit=BOUND_S + SLACK_S)
        held = c.holders()
        assert sorted(held.values()) == ["r0", "r1", "r2"], held
        # Stays so: nothing moves back once balanced.
        moves = c.handovers
        await c.run_for(3 * LEASE_S)
        assert c.holders() == held and c.handovers == moves
        print(f"{order} gaps {gaps}: balanced {took:.1f} s after the last start, {moves} hand-over(s)")

    run_cluster(scenario, seed=hash((order, gaps)) & 0xFFFF)


def test_a_late_replica_gets_its_share() -> None:
    async def scenario(c: Cluster) -> None:
        c.start("r0")
        c.start("r1")
        await c.time_to_balance(["r0", "r1"], limit=BOUND_S + SLACK_S)
        await c.run_for(60.0)  # long settled: 2 + 1
        assert sorted(c.holders().values()).count("r2") == 0
        c.start("r2")
        await c.time_to_balance(["r0", "r1", "r2"], limit=BOUND_S + SLACK_S)
        assert sorted(c.holders().values()) == ["r0", "r1", "r2"]

    run_cluster(scenario, seed=7)


def test_a_killed_replica_that_restarts_gets_its_share_again() -> None:
    async def scenario(c: Cluster) -> None:
        for r in ("r0", "r1", "r2"):
            c.start(r)
        await c.time_to_balance(["r0", "r1", "r2"], limit=BOUND_S + SLACK_S)
        await c.kill("r1")
        # Its Lease is taken over at expiry by a survivor (two replicas: share 2).
        await c.time_to_balance(["r0", "r2"], limit=LEASE_S + SLACK_S)
        await c.run_for(10.0)
        c.start("r1")  # the StatefulSet brings the pod back under the same name
        await c.time_to_balance(["r0", "r1", "r2"], limit=BOUND_S + SLACK_S)
        assert sorted(c.holders().values()) == ["r0", "r1", "r2"]

    run_cluster(scenario, seed=11)


def test_more_replicas_than_leases_leaves_at_most_one_each() -> None:
    async def scenario(c: Cluster) -> None:
        c.start("r0")
        await c.run_for(30.0)  # r0 leads all three
        assert set(c.holders().values()) == {"r0"}
        for r in ("r1", "r2", "r3"):
            c.start(r)
        await c.time_to_balance(["r0", "r1", "r2", "r3"], limit=BOUND_S + SLACK_S)
        held = list(c.holders().values())
        assert len(set(held)) == 3, held

    run_cluster(scenario, seed=3)


def test_without_rebalancing_the_imbalance_stays() -> None:
    """The defect rebalancing fixes: spreading alone never moves a held Lease (the test can fail)."""

    async def scenario(c: Cluster) -> None:
        c.start("r0")
        await c.run_for(30.0)
        c.start("r1")
        c.start("r2")
        await c.run_for(BOUND_S * 3)
        assert set(c.holders().values()) == {"r0"}

    run_cluster(scenario, seed=5, rebalance=False)
