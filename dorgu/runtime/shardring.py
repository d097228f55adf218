"""A consistent-hashing ring with virtual nodes: which shard owns a key (pure; no I/O, no clock).

Rules it keeps:

* Every shard is placed on a 64-bit circle at ``vnodes`` points, ``hash("<shard>#<i>")``; a key belongs to
  the first point at or after ``hash(key)`` (wrapping around). The hash is BLAKE2b (stable across processes
  and Python versions; ``hash()`` is salted per process and would give every replica a different ring).
* Minimal movement: adding a shard moves only the keys whose first point is now one of the new shard's —
  about ``1/K`` of them for the K-th shard; removing one moves only that shard's keys. No other key changes
  owner (the points of the other shards stay where they were).
* The ring is a function of the *set* of shard names: the sharder and any observer that sees the same
  shards computes the same owners, whatever order it learned them in.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable

__all__ = ["DEFAULT_VNODES", "HashRing", "key_hash"]

DEFAULT_VNODES = 256
"""Points per shard. The spread of one shard's share shrinks with ``1/sqrt(vnodes)``: at 256 four shards
hold 25 % ± about 2 % each (``tests/runtime/test_shardring.py`` holds them to 20–30 %)."""


def key_hash(value: str) -> int:
    """A stable 64-bit hash of ``value``."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


class HashRing:
    """The owners of keys for one set of shards (immutable; build a new ring when the set changes)."""

    def __init__(self, shards: Iterable[str], *, vnodes: int = DEFAULT_VNODES) -> None:
        if vnodes < 1:
            raise ValueError("vnodes must be at least 1")
        self.shards: frozenset[str] = frozenset(shards)
        points = sorted((key_hash(f"{s}#{i}"), s) for s in self.shards for i in range(vnodes))
        self._hashes = [h for h, _ in points]
        self._owners = [s for _, s in points]

    def __len__(self) -> int:
        return len(self.shards)

    def owner(self, key: str) -> str | None:
        """The shard owning ``key`` (None on an empty ring)."""
        if not self._hashes:
            return None
        i = bisect.bisect_left(self._hashes, key_hash(key))
        return self._owners[i % len(self._owners)]
