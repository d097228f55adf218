"""The consistent-hashing ring (pure): balance, minimal movement, order independence."""

from __future__ import annotations

from collections import Counter

import pytest

from dorgu.runtime.shardring import HashRing

KEYS = [f"apps/app-{i}" for i in range(10_000)]
SHARDS = [f"dorgu-{r}-{i}" for r in range(2) for i in range(2)]  # 4 shards over 2 replicas, as deployed


def _owners(ring: HashRing) -> dict[str, str | None]:
    return {k: ring.owner(k) for k in KEYS}


def test_four_shards_each_hold_20_to_30_percent() -> None:
    counts = Counter(_owners(HashRing(SHARDS)).values())
    assert set(counts) == set(SHARDS)
    for shard, n in counts.items():
        assert 0.20 <= n / len(KEYS) <= 0.30, (shard, n)


def test_the_e2e_size_is_balanced_too() -> None:
    # tests/e2e/test_sharding.py's 400 personas in one namespace, over its four shard names.
    keys = [f"sharded-apps/app-{i}" for i in range(400)]
    ring = HashRing(SHARDS)
    counts = Counter(ring.owner(k) for k in keys)
    for shard in SHARDS:
        assert 0.20 <= counts[shard] / len(keys) <= 0.30, counts


def test_adding_a_fifth_shard_moves_about_a_fifth_and_only_to_it() -> None:
    before = _owners(HashRing(SHARDS))
    after = _owners(HashRing([*SHARDS, "dorgu-2-0"]))
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(after[k] == "dorgu-2-0" for k in moved)  # nothing moves between the old shards
    assert 0.15 <= len(moved) / len(KEYS) <= 0.25, len(moved)


def test_removing_a_shard_moves_only_its_keys() -> None:
    before = _owners(HashRing(SHARDS))
    after = _owners(HashRing(SHARDS[1:]))
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == SHARDS[0]}


def test_the_ring_depends_on_the_set_only() -> None:
    assert _owners(HashRing(SHARDS)) == _owners(HashRing(reversed(SHARDS)))


def test_empty_ring_and_bad_vnodes() -> None:
    assert HashRing([]).owner("a/b") is None
    with pytest.raises(ValueError, match="vnodes"):
        HashRing(["a"], vnodes=0)
