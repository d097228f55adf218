"""Rate limiters for retrying work, with client-go's semantics (``util/workqueue/default_rate_limiters.go``).

A rate limiter answers one question: how long must this item wait before it is retried? It is used only
for retries (``WorkQueue.add_rate_limited``); a plain ``add`` is never rate limited.

- :class:`ItemExponentialFailureRateLimiter`: per item, ``base * 2**failures``, capped at ``max_delay``.
- :class:`BucketRateLimiter`: one token bucket shared by all items (``golang.org/x/time/rate``).
- :class:`MaxOfRateLimiter`: the worst (largest) delay of its children.
- :func:`default_controller_rate_limiter`: MaxOf(exponential 5 ms..1000 s, bucket 10 qps / burst 100),
  controller-runtime's default when the priority queue is off.

All times are seconds (floats); time is read from an injected :class:`~dorgu.runtime.clock.Clock`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

from dorgu.runtime.clock import Clock

__all__ = [
    "BucketRateLimiter",
    "ItemExponentialFailureRateLimiter",
    "MaxOfRateLimiter",
    "RateLimitSettings",
    "RateLimiter",
    "default_controller_rate_limiter",
]


class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float:
        """Record one more failure of ``item`` and return how many seconds it must wait before its retry."""
        ...

    def forget(self, item: Hashable) -> None:
        """Stop tracking ``item`` (it succeeded, or was given up on): its next failure starts afresh."""
        ...

    def num_requeues(self, item: Hashable) -> int:
        """How many failures of ``item`` are being counted."""
        ...


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimitSettings:
    """The knobs of :func:`default_controller_rate_limiter`; the defaults are client-go's."""

    base_delay: float = 0.005
    """Seconds an item waits after its first failure; each further failure doubles it."""
    max_delay: float = 1000.0
    """Ceiling in seconds on the per-item exponential delay."""
    qps: float = 10.0
    """Sustained retries per second across all items (the token bucket's refill rate); ``inf``: no limit."""
    burst: int = 100
    """Retries that may go at once before ``qps`` applies (the token bucket's size)."""


class ItemExponentialFailureRateLimiter:
    """Delay = ``base * 2**failures``, capped at ``max_delay``; failures are counted per item.

    The first failure waits ``base`` (failure count 0 when asked), the second twice that, and so on.
    """

    __slots__ = ("_base", "_failures", "_max")

    def __init__(self, *, base: float = 0.005, max_delay: float = 1000.0) -> None:
        if base < 0 or max_delay < 0:
            raise ValueError("delays must be non-negative")
        self._base = base
        self._max = max_delay
        self._failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        exp = self._failures.get(item, 0)
        # The count keeps growing past the cap (as in client-go), so num_requeues stays truthful.
        self._failures[item] = exp + 1
        # 2**exp overflows a float past 1023; any exponent that large is far beyond every sane cap.
        if exp >= 1023:
            return self._max
        return min(self._base * math.ldexp(1.0, exp), self._max)

    def forget(self, item: Hashable) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter:
    """A token bucket shared by every item, reserving tokens the way ``golang.org/x/time/rate`` does.

    The bucket starts full (``burst`` tokens) and refills at ``qps`` tokens a second up to ``burst``. Each
    :meth:`when` takes one token *now*, even when the bucket is empty: the balance goes negative and the
    returned wait is the time until the bucket has refilled to zero, so later callers queue up behind
    earlier ones. It is not per item, so :meth:`forget` does nothing and :meth:`num_requeues` is always 0.
    """

    __slots__ = ("_burst", "_clock", "_last", "_qps", "_tokens")

    def __init__(self, *, qps: float = 10.0, burst: int = 100, clock: Clock) -> None:
        if qps <= 0:
            raise ValueError("qps must be positive (use math.inf for no limit)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._qps = qps
        self._burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def when(self, item: Hashable) -> float:
        if math.isinf(self._qps):
            return 0.0
        now = self._clock.monotonic()
        # Refill for the time since the last reservation (never for time "before" it), up to the size.
        elapsed = max(0.0, now - self._last)
        tokens = min(float(self._burst), self._tokens + elapsed * self._qps)
        tokens -= 1.0
        self._tokens = tokens
        self._last = max(now, self._last)
        return -tokens / self._qps if tokens < 0 else 0.0

    def forget(self, item: Hashable) -> None:
        """Nothing to forget: the bucket is shared by all items."""

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The largest delay of its children. Every child is asked (each records the failure or takes a token)."""

    __slots__ = ("_limiters",)

    def __init__(self, *limiters: RateLimiter) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: Hashable) -> float:
        # Not max() over a generator that could stop early: every child must see the failure.
        delays = [limiter.when(item) for limiter in self._limiters]
        return max(delays)

    def forget(self, item: Hashable) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(limiter.num_requeues(item) for limiter in self._limiters)


def default_controller_rate_limiter(
    settings: RateLimitSettings | None = None, *, clock: Clock
) -> MaxOfRateLimiter:
    """client-go's ``DefaultControllerRateLimiter``: MaxOf(per-item exponential, shared token bucket).

    With the defaults: 5 ms doubling to at most 1000 s per item, and no more than 10 retries a second
    overall after a burst of 100. The bucket is there only to cap overall retry speed.
    """
    s = settings or RateLimitSettings()
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(base=s.base_delay, max_delay=s.max_delay),
        BucketRateLimiter(qps=s.qps, burst=s.burst, clock=clock),
    )
