"""The work queue and rate limiters: client-go's semantics, checked on a FakeClock (no real sleeps)."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter, defaultdict
from collections.abc import Coroutine
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from dorgu.runtime.clock import FakeClock
from dorgu.runtime.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimitSettings,
    default_controller_rate_limiter,
)
from dorgu.runtime.workqueue import ShutDown, WorkQueue

_names = itertools.count()
PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(coro)


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until the loop is quiet (a handful of hops is all any wake-up takes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


def new_queue(clock: FakeClock, **kwargs: Any) -> WorkQueue[str]:
    """A queue with a unique metrics name and no periodic metrics task (unless asked for)."""
    kwargs.setdefault("unfinished_work_update_period", None)
    return WorkQueue(name=f"wq-{next(_names)}", controller="test", clock=clock, **kwargs)


def sample(metric: str, q: WorkQueue[str], **extra: str) -> float:
    value = REGISTRY.get_sample_value(metric, {"name": q.name, "controller": q.controller, **extra})
    return 0.0 if value is None else value


# -------------------------------------------------------------------------------------------------------
# Properties


KEYS = st.sampled_from("abcde")
WORKERS = 3
worker_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), KEYS),
        st.tuples(st.just("finish"), st.integers(0, WORKERS - 1)),
        st.tuples(st.just("settle"), st.none()),
    ),
    max_size=60,
)


@PROPERTY_SETTINGS
@given(ops=worker_ops)
def test_no_key_held_twice_and_readds_collapse(ops: list[tuple[str, Any]]) -> None:
    """(a) no key is held by two workers at once; (b) adds during processing collapse into one more run.

    A model keeps client-go's dirty/processing sets: an add counts as a new run exactly when the key is not
    already dirty. After every step the queue's length must match the model's queued keys, and in the end
    each key must have run exactly as often as the model says.
    """

    async def scenario() -> None:
        q = new_queue(FakeClock())
        loop = asyncio.get_running_loop()
        held: dict[int, str] = {}
        release: dict[int, asyncio.Future[None]] = {}
        runs: Counter[str] = Counter()
        expected: Counter[str] = Counter()
        dirty: set[str] = set()
        processing: set[str] = set()

        async def worker(i: int) -> None:
            while True:
                try:
                    key = await q.get()
                except ShutDown:
                    return
                # (a): nobody else holds it, and the model agrees it was waiting.
                assert key not in held.values()
                assert key in dirty and key not in processing
                dirty.discard(key)
                processing.add(key)
                held[i] = key
                runs[key] += 1
                release[i] = fut = loop.create_future()
                await fut
                del held[i]
                processing.discard(key)
                q.done(key)

        tasks = [loop.create_task(worker(i)) for i in range(WORKERS)]
        await settle()
        for op, arg in ops:
            if op == "add":
                if arg not in dirty:
                    dirty.add(arg)
                    expected[arg] += 1
                q.add(arg)
            elif op == "finish" and arg in held:
                release[arg].set_result(None)
            if op != "add":  # adds pile up until the next step lets the workers run
                await settle()
            assert len(q) == len(dirty - processing)
            assert len(set(held.values())) == len(held)
        await settle()
        # Liveness: an idle worker never leaves a key queued.
        if len(held) < WORKERS:
            assert len(q) == 0
        # Finish everything (including the one extra run of each re-added key).
        while held:
            for i in list(held):
                release[i].set_result(None)
            await settle()
        assert len(q) == 0 and not dirty and not processing
        assert runs == expected
        q.shutdown()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

    run(scenario())


DELAYS = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0])
STEPS = st.sampled_from([0.25, 0.5, 1.0, 2.0, 3.0])
delay_ops = st.lists(
    st.one_of(st.tuples(st.just("add_after"), KEYS, DELAYS), st.tuples(st.just("advance"), st.none(), STEPS)),
    max_size=50,
)


@PROPERTY_SETTINGS
@given(ops=delay_ops)
def test_add_after_releases_at_earliest_requested_time(ops: list[tuple[str, str | None, float]]) -> None:
    """(c) a delayed key is handed out exactly at the minimum of its requested ready times, never earlier.

    One worker takes keys and records the clock at each get; the model predicts each key's release times.
    """

    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock)
        got: defaultdict[str, list[float]] = defaultdict(list)
        want: defaultdict[str, list[float]] = defaultdict(list)
        ready: dict[str, float] = {}  # the model: each waiting key's earliest ready time

        async def worker() -> None:
            while True:
                try:
                    key = await q.get()
                except ShutDown:
                    return
                got[key].append(clock.monotonic())
                q.done(key)

        task = asyncio.get_running_loop().create_task(worker())
        await settle()
        for op, key, amount in ops:
            now = clock.monotonic()
            if op == "add_after":
                assert key is not None
                if amount <= 0:
                    want[key].append(now)  # no delay: added at once (a waiting entry is left alone)
                else:
                    ready[key] = min(ready.get(key, now + amount), now + amount)
                q.add_after(key, amount)
                await settle()
            else:
                target = now + amount
                for k, at in sorted(ready.items(), key=lambda kv: kv[1]):
                    if at <= target:
                        want[k].append(at)
                        del ready[k]
                await clock.advance(amount)
                await settle()
            assert q.waiting == len(ready)
            assert got == want
        q.shutdown()
        await asyncio.wait_for(task, timeout=5)

    run(scenario())


@PROPERTY_SETTINGS
@given(keys=st.lists(st.sampled_from("abcdefgh"), max_size=40))
def test_dedup_waiting_key_is_handed_out_once(keys: list[str]) -> None:
    """(d) however often a waiting key is added, it is handed out once, in order of its first add."""

    async def scenario() -> None:
        q = new_queue(FakeClock())
        for key in keys:
            q.add(key)
        unique = list(dict.fromkeys(keys))
        assert len(q) == len(unique)
        taken = []
        while len(q):
            taken.append(await q.get())
        assert taken == unique
        for key in taken:
            q.done(key)
        assert len(q) == 0
        assert sample("workqueue_adds_total", q) == len(unique)

    run(scenario())


# -------------------------------------------------------------------------------------------------------
# Core queue behaviour


def test_readd_during_processing_runs_once_more_after_done() -> None:
    async def scenario() -> None:
        q = new_queue(FakeClock())
        q.add("a")
        assert await q.get() == "a"
        for _ in range(5):
            q.add("a")
        # Not queued while processing: a second worker must not get it.
        assert len(q) == 0
        q.done("a")
        assert len(q) == 1
        assert await q.get() == "a"
        q.done("a")
        assert len(q) == 0
        # A spurious done changes nothing.
        q.done("a")
        assert len(q) == 0

    run(scenario())


def test_add_wakes_exactly_one_blocked_getter() -> None:
    async def scenario() -> None:
        q = new_queue(FakeClock())
        getters = [asyncio.create_task(q.get()) for _ in range(3)]
        await settle()
        q.add("a")
        await settle()
        finished = [t for t in getters if t.done()]
        assert len(finished) == 1 and finished[0].result() == "a"
        q.add("b")
        await settle()
        assert sorted(t.result() for t in getters if t.done()) == ["a", "b"]
        (still_blocked,) = [t for t in getters if not t.done()]
        q.shutdown()
        with pytest.raises(ShutDown):
            await still_blocked

    run(scenario())


def test_cancelled_getter_does_not_swallow_a_key() -> None:
    async def scenario() -> None:
        q = new_queue(FakeClock())
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await settle()
        q.add("a")  # wakes ``first`` ...
        first.cancel()  # ... which is cancelled before it runs: the wake-up must pass to ``second``.
        await settle()
        assert first.cancelled()
        assert second.done() and second.result() == "a"

    run(scenario())


def test_shutdown_wakes_blocked_getter_and_drains_queue() -> None:
    async def scenario() -> None:
        q = new_queue(FakeClock())
        blocked = asyncio.create_task(q.get())
        await settle()
        q.shutdown()
        await settle()
        with pytest.raises(ShutDown):
            await blocked

        q2 = new_queue(FakeClock())
        q2.add("a")
        q2.shutdown()
        q2.add("b")  # ignored once shutting down
        q2.add_after("c", 1.0)
        q2.add_rate_limited("d")
        assert await q2.get() == "a"  # what was queued is still handed out
        with pytest.raises(ShutDown):
            await q2.get()

    run(scenario())


def test_shutdown_with_drain_waits_for_done() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock)
        q.add("a")
        key = await q.get()
        drain = asyncio.create_task(q.shutdown_with_drain(timeout=10.0))
        await settle()
        assert not drain.done()
        q.done(key)
        await settle()
        assert drain.done() and drain.result() is True

        # Nothing in flight: returns at once.
        assert await new_queue(clock).shutdown_with_drain(timeout=1.0) is True

        # The timeout runs on the clock.
        q3 = new_queue(clock)
        q3.add("b")
        await q3.get()
        drain3 = asyncio.create_task(q3.shutdown_with_drain(timeout=10.0))
        await settle()
        await clock.advance(9.0)
        assert not drain3.done()
        await clock.advance(1.0)
        await settle()
        assert drain3.done() and drain3.result() is False

    run(scenario())


def test_add_after_keeps_earliest_and_moves_up() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock)
        q.add_after("a", 5.0)
        q.add_after("a", 10.0)  # later: nothing changes
        assert q.waiting == 1
        await clock.advance(4.999)
        assert len(q) == 0
        await clock.advance(0.001)
        await settle()
        assert len(q) == 1 and q.waiting == 0

        q.add_after("b", 10.0)
        q.add_after("b", 2.0)  # earlier: moves up, wakes the delaying loop
        await clock.advance(2.0)
        await settle()
        assert len(q) == 2
        await clock.advance(20.0)  # the stale 10 s entry does not release "b" again
        await settle()
        assert len(q) == 2

    run(scenario())


def test_add_rate_limited_backs_off_exponentially_and_forget_resets() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock)
        for expected_delay in (0.005, 0.01, 0.02):
            q.add_rate_limited("a")
            assert len(q) == 0
            await clock.advance(expected_delay / 2)
            assert len(q) == 0
            await clock.advance(expected_delay / 2)
            await settle()
            assert len(q) == 1
            q.done(await q.get())
        assert q.num_requeues("a") == 3
        q.forget("a")
        assert q.num_requeues("a") == 0
        assert sample("workqueue_retries_total", q) == 3

    run(scenario())


def test_many_keys_dedupe_and_delayed_keys_come_out_earliest_first() -> None:
    """20,000 keys: double adds collapse, a second ``add_after`` moves each key to its earlier ready time,
    and delayed keys come out in ready-time order (ties in the order they were scheduled). How fast the
    queue does this is ``bench/runtime.py``'s figure 5."""

    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock)
        n = 20_000
        for i in range(n):
            q.add(f"k{i}")
            q.add(f"k{i}")
        assert len(q) == n
        for i in range(n):
            q.add_after(f"d{i}", 1.0 + (i % 100) / 10)
            q.add_after(f"d{i}", 0.5 + (i % 50) / 10)  # always earlier than the first: every key moves up
        assert q.waiting == n and len(q) == n
        got = []
        for _ in range(n):
            key = await q.get()
            got.append(key)
            q.done(key)
        assert got == [f"k{i}" for i in range(n)]
        # The latest moved-up time is 0.5 + 4.9 s; without the move-up most keys would still wait (≤ 10.9 s).
        await clock.advance(5.5)
        await settle()
        assert len(q) == n and q.waiting == 0
        got = []
        for _ in range(n):
            key = await q.get()
            got.append(key)
            q.done(key)
        assert got == [f"d{i}" for i in sorted(range(n), key=lambda i: (i % 50, i))]
        assert len(q) == 0 and q.waiting == 0

    run(scenario())


# -------------------------------------------------------------------------------------------------------
# Metrics


def test_metrics_move() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        q = new_queue(clock, unfinished_work_update_period=0.5)
        q.add("a")
        q.add("a")
        q.add("b")
        assert sample("workqueue_adds_total", q) == 2
        assert sample("workqueue_depth", q, priority="") == 2
        await clock.advance(2.0)
        key = await q.get()
        assert sample("workqueue_depth", q, priority="") == 1
        assert sample("workqueue_queue_duration_seconds_count", q) == 1
        assert sample("workqueue_queue_duration_seconds_sum", q) == pytest.approx(2.0)
        # The periodic updater (started by get) refreshes the in-flight gauges every 0.5 s on the clock.
        await settle()
        await clock.advance(1.0)
        assert sample("workqueue_unfinished_work_seconds", q) == pytest.approx(1.0)
        assert sample("workqueue_longest_running_processor_seconds", q) == pytest.approx(1.0)
        await clock.advance(2.0)
        q.done(key)
        assert sample("workqueue_work_duration_seconds_count", q) == 1
        assert sample("workqueue_work_duration_seconds_sum", q) == pytest.approx(3.0)
        await clock.advance(0.5)
        assert sample("workqueue_unfinished_work_seconds", q) == 0
        q.add_rate_limited("c")
        q.add_after("d", 1.0)
        assert sample("workqueue_retries_total", q) == 2
        q.shutdown()

    run(scenario())


# -------------------------------------------------------------------------------------------------------
# Rate limiters


def test_exponential_backoff_doubles_caps_and_forget_resets() -> None:
    limiter = ItemExponentialFailureRateLimiter(base=0.005, max_delay=1000.0)
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == [0.005, 0.01, 0.02, 0.04]
    for i, d in enumerate(delays):
        assert d == pytest.approx(min(0.005 * 2**i, 1000.0))
    assert delays[-1] == 1000.0
    assert limiter.num_requeues("a") == 20
    assert limiter.when("b") == 0.005  # per item
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == 0.005
    for _ in range(3000):  # no float overflow however long it keeps failing
        limiter.when("x")
    assert limiter.when("x") == 1000.0


def test_token_bucket_burst_then_qps() -> None:
    clock = FakeClock()
    bucket = BucketRateLimiter(qps=10, burst=100, clock=clock)
    assert [bucket.when(i) for i in range(100)] == [0.0] * 100
    # Empty: each further call reserves the next token 0.1 s after the previous one.
    assert bucket.when("x") == pytest.approx(0.1)
    assert bucket.when("y") == pytest.approx(0.2)
    run(clock.advance(1.0))  # 10 tokens back: repays the 2 borrowed, 8 free
    assert [bucket.when(i) for i in range(8)] == [0.0] * 8
    assert bucket.when("z") == pytest.approx(0.1)
    run(clock.advance(1000.0))  # never refills past the burst
    assert [bucket.when(i) for i in range(100)] == [0.0] * 100
    assert bucket.when("w") == pytest.approx(0.1)
    assert bucket.num_requeues("w") == 0


def test_max_of_takes_the_largest() -> None:
    clock = FakeClock()
    exponential = ItemExponentialFailureRateLimiter(base=0.005, max_delay=1000.0)
    limiter = MaxOfRateLimiter(exponential, BucketRateLimiter(qps=1, burst=1, clock=clock))
    assert limiter.when("a") == 0.005  # the bucket had a token: the exponential limiter decides
    assert limiter.when("a") == pytest.approx(1.0)  # the bucket is empty: it decides
    assert limiter.num_requeues("a") == 2
    limiter.forget("a")
    assert exponential.num_requeues("a") == 0


def test_default_controller_rate_limiter() -> None:
    clock = FakeClock()
    limiter = default_controller_rate_limiter(clock=clock)
    assert [limiter.when(i) for i in range(100)] == [0.005] * 100
    assert limiter.when(100) == pytest.approx(0.1)  # the 10 qps / burst 100 bucket applies
    custom = default_controller_rate_limiter(
        RateLimitSettings(base_delay=1.0, max_delay=4.0, qps=1000.0, burst=1000), clock=clock
    )
    assert [custom.when("a") for _ in range(4)] == [1.0, 2.0, 4.0, 4.0]
