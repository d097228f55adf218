"""Leader election against a real control plane: every candidate is an OS process, the audit log is the judge.

Each candidate (``tests/runtime/programs/leader_candidate.py``) has its own User-Agent,
``dorgu-test/<identity>``, and while leading merge-patches one ConfigMap every 0.2 s through a client fenced
by the election. The apiserver's audit log (leases and configmaps, Metadata level, one line per finished
request) tells who wrote what, when the server received it and when it answered: a *term* is a writer's run
from its first successful ConfigMap write to its last, and terms of different writers must never overlap.

Rules checked (client-go ``tools/leaderelection`` semantics):

* one leader at a time among contending processes, and the Lease's holder is the one writing;
* a ``kill -9``-ed leader is replaced, never before its Lease expired (the audit log's times);
* a SIGTERM-ed leader releases the Lease after its last write, and the next leader takes over;
* a leader paused (SIGSTOP) past the lease wakes up fenced: nothing it writes lands after its successor's
  first write, and it exits with LeadershipLost;
* spreading: a replica that already leads a Lease of the group leaves a free one to a replica leading none.

Measured figures are printed (``pytest -s`` shows them); none is asserted: how fast fail-over and hand-over
are is measured by ``bench/leases.py``. Waits are generous deadlines for a condition, never a speed claim.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import FakeClock
from dorgu.runtime.leaderelection import LeaderElectionSettings, LeaderElector, NotLeading
from dorgu.runtime.resource import CONFIGMAPS, LEASES
from tests.runtime.election_kit import (
    DEFAULT_DURATIONS,
    TEST_DURATIONS,
    Candidate,
    CandidateSettings,
    Plane,
    Req,
    audit,
    audited_plane,
    ok_writes,
    successor,
    wait_for_leader,
    wait_until,
)

START_TIMEOUT_S = 90.0
"""Python processes starting at once on a busy machine: generous."""
SPREAD_DELAY_S = 20.0
"""Long enough that B, started right after A's second process, starts and wins on a loaded machine."""


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    with audited_plane(tmp_path_factory.mktemp("leaderelection")) as p:
        yield p


@pytest.fixture
def spawn(plane: Plane) -> Iterator[Callable[..., Candidate]]:
    """Starts a candidate of :class:`CandidateSettings` ``**kw``; every one is killed after the test."""
    started: list[Candidate] = []

    def make(**kw: Any) -> Candidate:
        c = Candidate(plane, CandidateSettings(**kw))
        started.append(c)
        return c

    yield make
    for c in started:
        c.close()


def spawn_three(
    spawn: Callable[..., Candidate], ns: str, durations: tuple[float, float, float]
) -> list[Candidate]:
    return [spawn(identity=f"{ns}-{i}", lease="ctl", namespace=ns, durations=durations) for i in range(3)]


# -- the audit log -----------------------------------------------------------------------------------------


def settled_audit(plane: Plane, namespace: str, cands: Sequence[Candidate]) -> list[Req]:
    """Wait until the audit log holds every ConfigMap write the candidates reported, then read it."""
    reported = {c.ua: len(c.of("write")) for c in cands}

    def caught_up() -> list[Req] | None:
        reqs = audit(plane, namespace)
        writes = ok_writes(reqs, "configmaps")
        if all(sum(1 for w in writes if w.ua == ua) >= n for ua, n in reported.items()):
            return reqs
        return None

    return wait_until(caught_up, timeout=60, what="the audit log to catch up", cands=cands)


@dataclass
class Term:
    ua: str
    first_received: float
    last_done: float
    writes: int


def single_writer_terms(reqs: list[Req]) -> list[Term]:
    """Group successful ConfigMap writes into terms and assert one writer at a time: no writer comes back
    after another one wrote, and each term's last write was answered before the next term's first arrived."""
    terms: list[Term] = []
    for w in ok_writes(reqs, "configmaps"):
        if terms and terms[-1].ua == w.ua:
            terms[-1].last_done = max(terms[-1].last_done, w.done)
            terms[-1].writes += 1
        else:
            terms.append(Term(w.ua, w.received, w.done, 1))
    uas = [t.ua for t in terms]
    assert len(uas) == len(set(uas)), f"writers interleave: {uas}"
    for a, b in itertools.pairwise(terms):
        assert a.last_done <= b.first_received, (
            f"terms overlap: {a.ua}'s last write answered at {a.last_done:.3f}, "
            f"{b.ua}'s first received at {b.first_received:.3f}"
        )
    return terms


# -- settings and the fence, in process (FakeClock: no real sleeping) --------------------------------------


def test_settings_validation() -> None:
    s = LeaderElectionSettings(name="ctl", namespace="ns", identity="me")
    assert (s.lease_duration_s, s.renew_deadline_s, s.retry_period_s) == DEFAULT_DURATIONS
    LeaderElectionSettings(name="ctl", namespace="ns", identity="me", lease_duration_s=3, renew_deadline_s=2,
                           retry_period_s=0.5)  # fmt: skip
    bad = [
        ((10.0, 10.0, 2.0), "lease_duration_s must be greater"),  # lease must exceed the renew deadline
        ((5.0, 10.0, 2.0), "lease_duration_s must be greater"),
        ((15.0, 2.4, 2.0), "renew_deadline_s must be greater"),  # renew deadline must exceed 1.2 × retry
        ((15.0, 1.0, 2.0), "renew_deadline_s must be greater"),
    ]
    for (lease, renew, retry), message in bad:
        with pytest.raises(ValueError, match=message):
            LeaderElectionSettings(name="ctl", namespace="ns", identity="me", lease_duration_s=lease,
                                   renew_deadline_s=renew, retry_period_s=retry)  # fmt: skip


def test_write_guard_refuses_writes_once_the_validity_passed(plane: Plane) -> None:
    ns = plane.namespace("le-guard")
    settings = LeaderElectionSettings(
        name="guarded", namespace=ns, identity="guard", lease_duration_s=2.5, renew_deadline_s=2.0,
        retry_period_s=0.5,
    )  # fmt: skip
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fenced"}, "data": {"n": "1"}}

    async def scenario() -> None:
        clock = FakeClock()
        async with ApiClient(plane.cp.connection(user_agent="dorgu-test/guard")) as client:
            el = LeaderElector(client, settings, clock=clock)
            el.install_guard()
            with pytest.raises(NotLeading):
                await client.create(CONFIGMAPS, cm, namespace=ns)  # not leading yet
            assert await el.try_acquire_or_renew()  # creates the Lease: the guard lets its POST through
            lease = await client.get(LEASES, "guarded", namespace=ns)
            assert lease["spec"]["holderIdentity"] == "guard"
            assert lease["spec"]["leaseDurationSeconds"] == 3  # 2.5 s rounded up, never down
            await client.create(CONFIGMAPS, cm, namespace=ns)
            await clock.advance(1.99)
            assert el.is_valid()
            await client.patch(CONFIGMAPS, "fenced", {"data": {"n": "2"}}, namespace=ns)
            await clock.advance(0.02)  # renew deadline passed since the renewal was sent
            assert not el.is_valid()
            with pytest.raises(NotLeading):
                await client.patch(CONFIGMAPS, "fenced", {"data": {"n": "late"}}, namespace=ns)
            with pytest.raises(NotLeading):  # a Lease whose name merely starts with ours is not ours
                el.guard("PUT", LEASES.path(namespace=ns, name="guarded-other"))
            el.guard("PUT", LEASES.path(namespace=ns, name="guarded"))  # our own Lease stays writable...
            assert await el.try_acquire_or_renew()  # ... so a renewal makes writes valid again
            await client.patch(CONFIGMAPS, "fenced", {"data": {"n": "3"}}, namespace=ns)

    asyncio.run(scenario())
    assert plane.kube.get(CONFIGMAPS.path(namespace=ns, name="fenced"))["data"]["n"] == "3"


def test_a_leader_that_sees_another_holder_is_fenced_at_once(plane: Plane) -> None:
    """Expiry is judged on each candidate's own clock; once the leader reads another holder, it stops."""
    ns = plane.namespace("le-fence")

    def settings(identity: str) -> LeaderElectionSettings:
        return LeaderElectionSettings(
            name="ctl", namespace=ns, identity=identity, lease_duration_s=3, renew_deadline_s=2,
            retry_period_s=0.5,
        )  # fmt: skip

    async def scenario() -> None:
        a_clock, b_clock = FakeClock(), FakeClock()
        async with (
            ApiClient(plane.cp.connection(user_agent="dorgu-test/fence-a")) as ca,
            ApiClient(plane.cp.connection(user_agent="dorgu-test/fence-b")) as cb,
        ):
            a = LeaderElector(ca, settings("a"), clock=a_clock)
            b = LeaderElector(cb, settings("b"), clock=b_clock)
            assert await a.try_acquire_or_renew()
            assert not await b.try_acquire_or_renew()  # held, and not expired on b's clock
            await b_clock.advance(2.9)
            assert not await b.try_acquire_or_renew()
            await b_clock.advance(0.2)  # a lease duration since b saw the record change: expired for b
            assert await b.try_acquire_or_renew()
            assert a.is_valid()  # a's own clock has not moved ...
            assert not await a.try_acquire_or_renew()  # ... but its renewal reads b as holder (409, then GET)
            assert not a.is_valid()
            assert plane.lease_holder(ns, "ctl") == "b"

    asyncio.run(scenario())


# -- processes contending for one Lease --------------------------------------------------------------------


def test_exactly_one_of_three_processes_leads(plane: Plane, spawn: Callable[..., Candidate]) -> None:
    ns = plane.namespace("le-contend")
    cands = spawn_three(spawn, ns, TEST_DURATIONS)
    leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
    # Hold for a few renewals, checking that the Lease's holder and the ConfigMap's writer agree throughout.
    renewals_before = sum(1 for r in ok_writes(audit(plane, ns), "leases") if r.ua == leader.ua)
    samples = 0

    def renewed_four_more_times() -> bool:
        nonlocal samples
        assert plane.lease_holder(ns, "ctl") == leader.identity
        cm = plane.kube.get(CONFIGMAPS.path(namespace=ns, name="leader-writes"))
        assert cm["data"]["writer"] == leader.identity
        samples += 1
        renewals = sum(1 for r in ok_writes(audit(plane, ns), "leases") if r.ua == leader.ua)
        return renewals >= renewals_before + 4

    wait_until(renewed_four_more_times, timeout=60, what="four renewals", cands=cands)
    assert [c.identity for c in cands if c.of("acquired")] == [leader.identity]
    reqs = settled_audit(plane, ns, cands)
    terms = single_writer_terms(reqs)
    assert [t.ua for t in terms] == [leader.ua]
    assert {r.ua for r in ok_writes(reqs, "leases")} == {leader.ua}  # followers' Lease writes all failed
    refused = sum(1 for r in reqs if r.resource == "leases" and r.write and r.code == 409)
    print(
        f"\ncontention: {leader.identity} leads alone; {terms[0].writes} ConfigMap writes, holder checked "
        f"{samples} times, {refused} Lease writes of the others refused with 409"
    )


def test_kill_9_failover_within_lease_duration_plus_two_retry_periods(
    plane: Plane, spawn: Callable[..., Candidate]
) -> None:
    lease_s, _, retry_s = TEST_DURATIONS
    ns = plane.namespace("le-kill")
    cands = spawn_three(spawn, ns, TEST_DURATIONS)
    leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
    t_kill, wall_kill = time.monotonic(), time.time()
    leader.send(signal.SIGKILL)
    rule = lease_s + 2 * retry_s
    new = successor(cands, leader, timeout=rule + 60)
    first = new.first("write")
    assert first is not None
    failover = first["mono"] - t_kill
    reqs = settled_audit(plane, ns, cands)
    terms = single_writer_terms(reqs)
    assert [t.ua for t in terms] == [leader.ua, new.ua]
    leases = ok_writes(reqs, "leases")
    last_renewal = max(r.received for r in leases if r.ua == leader.ua)
    taken = min(r.received for r in leases if r.ua == new.ua)
    print(
        f"\nkill -9 failover (lease {lease_s:g} s, retry {retry_s:g} s): the new leader's first write "
        f"answered {failover:.2f} s after the kill (the server received it "
        f"{terms[1].first_received - wall_kill:.2f} s after); rule {rule:g} s. The Lease was taken "
        f"{taken - last_renewal:.2f} s after the last renewal."
    )
    assert taken - last_renewal >= lease_s - 0.01  # nobody takes a Lease before it expired


def test_sigterm_releases_and_the_next_leader_writes_within_a_second(
    plane: Plane, spawn: Callable[..., Candidate]
) -> None:
    ns = plane.namespace("le-term")
    cands = spawn_three(spawn, ns, TEST_DURATIONS)
    leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
    t_term = time.monotonic()
    leader.send(signal.SIGTERM)
    assert leader.wait_exit(timeout=60) == 0
    released = leader.first("released")
    assert released is not None and released["holder"] == "", leader.describe()
    new = successor(cands, leader, timeout=60)
    first = new.first("write")
    assert first is not None
    reqs = settled_audit(plane, ns, cands)
    terms = single_writer_terms(reqs)
    assert [t.ua for t in terms] == [leader.ua, new.ua]
    release = max((r for r in ok_writes(reqs, "leases") if r.ua == leader.ua), key=lambda r: r.received)
    assert terms[0].last_done <= release.received  # the release came after every write of the old leader
    handover = terms[1].first_received - release.done
    print(
        f"\nSIGTERM handover: the next leader's first write reached the server {handover * 1000:.0f} ms "
        f"after the release was answered ({(first['mono'] - t_term) * 1000:.0f} ms from SIGTERM to the "
        f"write's answer)"
    )


def test_a_leader_stopped_past_its_lease_writes_nothing_after_resuming(
    plane: Plane, spawn: Callable[..., Candidate]
) -> None:
    lease_s, _, retry_s = TEST_DURATIONS
    ns = plane.namespace("le-stop")
    cands = spawn_three(spawn, ns, TEST_DURATIONS)
    leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
    t_stop = time.monotonic()
    leader.send(signal.SIGSTOP)
    new = successor(cands, leader, timeout=lease_s + 2 * retry_s + 60)
    wait_until(lambda: time.monotonic() >= t_stop + lease_s + retry_s, timeout=60, what="the pause")
    t_cont = time.monotonic()
    leader.send(signal.SIGCONT)
    assert leader.wait_exit(timeout=60) == 3, leader.describe()  # LeadershipLost: the process exits
    assert leader.of("lost")
    late = [w for w in leader.of("write") if w["sent_mono"] > t_cont]
    refused = [e for e in leader.of("refused") if e["mono"] > t_cont]
    assert not late, f"writes sent after SIGCONT: {late}"
    # One more write of the new leader after the old one exited: the audit log has everything by then.
    n = len(new.of("write")) + 1
    wait_until(
        lambda: len(new.of("write")) >= n, timeout=60, what="the new leader to keep writing", cands=cands
    )
    reqs = settled_audit(plane, ns, cands)
    terms = single_writer_terms(reqs)
    assert [t.ua for t in terms] == [leader.ua, new.ua]
    old = [w for w in ok_writes(reqs, "configmaps") if w.ua == leader.ua]
    assert all(w.done <= terms[1].first_received for w in old)
    print(
        f"\nSIGSTOP for {t_cont - t_stop:.1f} s (lease {lease_s:g} s): the old leader refused {len(refused)} "
        f"write(s) after SIGCONT, wrote none, and exited with LeadershipLost; its last write was answered "
        f"{terms[1].first_received - terms[0].last_done:.2f} s before its successor's first"
    )


def test_kill_9_failover_with_the_default_durations(plane: Plane, spawn: Callable[..., Candidate]) -> None:
    lease_s, _, retry_s = DEFAULT_DURATIONS
    ns = plane.namespace("le-defaults")
    cands = [
        spawn(identity=f"{ns}-{i}", lease="ctl", namespace=ns, durations=DEFAULT_DURATIONS) for i in range(2)
    ]
    leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
    (follower,) = [c for c in cands if c is not leader]
    t_kill = time.monotonic()
    leader.send(signal.SIGKILL)
    rule = lease_s + 2 * retry_s
    wait_until(lambda: follower.of("write"), timeout=rule + 60, what="the failover", cands=cands)
    first = follower.first("write")
    assert first is not None
    failover = first["mono"] - t_kill
    terms = single_writer_terms(settled_audit(plane, ns, cands))
    assert [t.ua for t in terms] == [leader.ua, follower.ua]
    print(
        f"\nkill -9 failover (defaults {lease_s:g}/{DEFAULT_DURATIONS[1]:g}/{retry_s:g} s): "
        f"{failover:.2f} s from the kill to the new leader's first write; rule {rule:g} s"
    )


# -- spreading ---------------------------------------------------------------------------------------------


def test_spreading_leaves_a_free_lease_to_the_replica_leading_none(
    plane: Plane, spawn: Callable[..., Candidate]
) -> None:
    lease_s, _, retry_s = TEST_DURATIONS
    ns = plane.namespace("le-spread")

    def candidate(identity: str, lease: str) -> Candidate:
        # A's two processes share the identity (that is what spreading counts) but not the User-Agent.
        return spawn(identity=identity, lease=lease, namespace=ns, durations=TEST_DURATIONS,
                     spread_delay_s=SPREAD_DELAY_S, configmap=f"writes-{lease}",
                     user_agent=f"dorgu-test/{identity}/{lease}")  # fmt: skip

    a1 = candidate("spread-a", "ctl-1")
    wait_until(lambda: a1.of("write"), timeout=START_TIMEOUT_S, what="A to lead lease 1", cands=[a1])
    t0 = time.monotonic()
    a2 = candidate("spread-a", "ctl-2")  # A contends for lease 2 at once, B right after it
    b = candidate("spread-b", "ctl-2")
    winner = wait_until(
        lambda: next((c for c in (a2, b) if c.of("acquired")), None),
        timeout=START_TIMEOUT_S, what="a leader of lease 2", cands=[a1, a2, b],
    )  # fmt: skip
    assert winner is b, "A, already leading lease 1, should have left lease 2 to B"
    acquired = b.first("acquired")
    assert acquired is not None
    wait_until(lambda: a2.observed_leader("spread-b"), timeout=60, what="A to see B lead", cands=[a2])
    assert not a2.of("acquired")
    assert plane.lease_holder(ns, "ctl-1") == "spread-a"
    assert plane.lease_holder(ns, "ctl-2") == "spread-b"
    # A held back rather than lost a race: it never even tried to write lease 2.
    assert not [r for r in audit(plane, ns) if r.ua == a2.ua and r.resource == "leases" and r.write]
    print(
        f"\nspreading: B took lease 2 {acquired['mono'] - t0:.2f} s after both were started; "
        f"A, leading lease 1, held back (spread_delay_s={SPREAD_DELAY_S:g} s)"
    )

    # A delay for free Leases, not a veto: with B dead, A takes lease 2 as soon as it expires — a dead
    # holder's Lease is taken over without the spreading wait (every survivor would wait alike).
    t_kill = time.monotonic()
    b.send(signal.SIGKILL)
    wait_until(
        lambda: a2.of("acquired"), timeout=lease_s + SPREAD_DELAY_S + 2 * retry_s + 60,
        what="A to take lease 2", cands=[a2],
    )  # fmt: skip
    took = a2.of("acquired")[0]["mono"] - t_kill
    print(
        f"  with B killed, A took lease 2 after {took:.2f} s "
        f"(lease {lease_s:g} s; no spreading wait for a dead holder's Lease)"
    )
    # Never before it expired: judged on the server's times of B's last renewal and A's take-over. (That it
    # comes without the spreading wait is a rule of timing: tests/runtime/test_leasebalance.py checks it on
    # the injected clock.)
    reqs = settled_audit(plane, ns, [a1, a2])
    lease_writes = ok_writes(reqs, "leases")  # B and A's second process write only lease 2
    last_renewal = max(r.received for r in lease_writes if r.ua == b.ua)
    taken = min(r.received for r in lease_writes if r.ua == a2.ua)
    assert taken - last_renewal >= lease_s - 0.01
