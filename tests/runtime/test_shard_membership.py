"""Shard liveness as the sharder judges it (pure, on a FakeClock): alive while the Lease record changes
within the lease duration, dead once released or expired; a shard with no Lease is dead only after a whole
duration; a sharder that just started counts every Lease it sees as alive for a duration."""

from __future__ import annotations

import asyncio

from dorgu.runtime.clock import FakeClock
from dorgu.runtime.sharding import ShardMembership


def _renew(m: ShardMembership, shard: str, n: int, holder: str | None = None) -> None:
    m.observe(
        f"applicationpersona-shard.{shard}",
        holder=shard if holder is None else holder,
        duration_s=15,
        record=f'{{"renew": {n}, "holder": "{holder}"}}'.encode(),
    )


def test_alive_expired_released_unknown() -> None:
    clock = FakeClock()
    m = ShardMembership(lease_duration_s=15, clock=clock)
    _renew(m, "a", 1)
    _renew(m, "b", 1)
    assert m.alive() == set()  # seen once: no proof of life, no personas for them yet ...
    assert not m.is_dead("a") and not m.is_dead("b")  # ... and none taken from them either
    _renew(m, "a", 2)
    _renew(m, "b", 2)
    assert m.alive() == {"a", "b"}
    asyncio.run(clock.advance(10))
    _renew(m, "a", 3)  # a renews, b does not
    asyncio.run(clock.advance(6))
    assert m.alive() == {"a"}
    assert m.is_dead("b")  # 16 s without a change: its renew deadline (10 s) passed long ago
    _renew(m, "a", 3)  # the same record seen again is no renewal
    asyncio.run(clock.advance(10))
    assert m.alive() == set() and m.is_dead("a")
    # A released Lease (empty holder) is dead at once: its work ended before the release.
    _renew(m, "c", 1)
    _renew(m, "c", 2)
    assert "c" in m.alive() and not m.is_dead("c")
    _renew(m, "c", 3, holder="")
    assert m.is_dead("c") and "c" not in m.alive()
    # A name with no Lease at all (deleted, or a label nobody holds) is dead only after a whole duration.
    assert not m.is_dead("ghost")
    asyncio.run(clock.advance(14))
    assert not m.is_dead("ghost")
    asyncio.run(clock.advance(1))
    assert m.is_dead("ghost")


def test_a_fresh_sharder_waits_a_duration_before_calling_a_stale_lease_dead() -> None:
    clock = FakeClock()
    m = ShardMembership(lease_duration_s=15, clock=clock)
    _renew(m, "old", 1)  # renewTime hours ago, for all we know: times written in it are never trusted
    assert "old" not in m.alive()  # never assigned to before it is seen renewing
    asyncio.run(clock.advance(14.9))
    assert not m.is_dead("old")
    asyncio.run(clock.advance(0.2))
    assert m.is_dead("old")
