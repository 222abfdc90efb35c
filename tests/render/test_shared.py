"""The render cache's shared level against a real redis-server: one render across instances,
a dead lock holder, the byte budget, and rendering on without Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from figserve.render.shared import LOCK, SIZES, USED, VALUE, SharedCache
from tests.support.live import free_port
from tests.support.redis import redis_server
from tests.support.waiting import until

FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


# Generous for a Redis that answers (a parallel test run loads the machine); the fault tests
# give their own short timeouts.
def _client(url: str, timeout: float = 10.0) -> Redis:
    return Redis.from_url(
        url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def instances(redis_url: str) -> AsyncIterator[Callable[..., SharedCache]]:
    """Shared caches as separate instances would have them: a client and a listener each."""
    made: list[SharedCache] = []

    async def make(max_bytes: int = 1 << 20, **kwargs: float) -> SharedCache:
        cache = SharedCache(_client(redis_url), max_bytes, 60, **kwargs)
        await cache.start()
        made.append(cache)
        return cache

    yield make  # type: ignore[misc]
    for cache in made:
        await cache.close()


class Drawing:
    """A render that waits until the test lets it finish, and counts its runs."""

    def __init__(self, data: bytes = b"image") -> None:
        self.data = data
        self.runs = 0
        self.release = asyncio.Event()

    async def __call__(self) -> bytes:
        self.runs += 1
        await self.release.wait()
        return self.data


async def test_concurrent_misses_on_two_instances_draw_once(instances) -> None:
    a, b = await instances(), await instances()
    draw = Drawing()
    calls = [asyncio.create_task(c.fetch_or_render("k1", draw)) for c in (a, b) * 5]
    await until(lambda: draw.runs == 1 and a.stats.waits + b.stats.waits == 9, "9 waiters", 10)
    draw.release.set()
    answers = await asyncio.gather(*calls)
    assert draw.runs == 1
    assert {data for data, _ in answers} == {b"image"}
    assert sorted(source for _, source in answers) == ["redis"] * 9 + ["rendered"]
    # Later misses anywhere are hits.
    assert await b.fetch_or_render("k1", draw) == (b"image", "redis")
    assert draw.runs == 1


async def test_a_dead_lock_holder_delays_the_others_by_the_lock_time_at_most(
    instances, redis_service
) -> None:
    cache = await instances()
    # An instance took the lock and died: nobody renews it.
    redis_service.command("SET", LOCK + "k2", "dead-holder", "PX", "400")
    draw = Drawing()
    draw.release.set()
    t0 = time.monotonic()
    assert await cache.fetch_or_render("k2", draw) == (b"image", "rendered")
    assert 0.3 <= time.monotonic() - t0 < 2.0
    assert cache.stats.takeovers == 1 and draw.runs == 1


async def test_a_live_holder_keeps_its_lock_past_the_lock_time(instances) -> None:
    a, b = await instances(lock_seconds=0.3), await instances(lock_seconds=0.3)
    slow = Drawing()
    holder = asyncio.create_task(a.fetch_or_render("k3", slow))
    await until(lambda: slow.runs == 1, "the render to start")
    waiter = asyncio.create_task(b.fetch_or_render("k3", slow))
    # What is checked is an absence over a time: three lock times pass, and the holder's
    # renewals keep the waiter waiting all along.
    await asyncio.sleep(1.0)
    assert not waiter.done() and slow.runs == 1
    slow.release.set()
    assert (await holder)[1] == "rendered" and (await waiter)[1] == "redis"


async def test_a_failed_render_frees_the_lock_for_the_next(instances, redis_service) -> None:
    a, b = await instances(), await instances()
    failing = asyncio.Event()

    async def broken() -> bytes:
        await failing.wait()
        raise RuntimeError("figure bug")

    first = asyncio.create_task(a.fetch_or_render("k4", broken))
    locked = lambda: redis_service.command("EXISTS", LOCK + "k4") == b":1\r\n"  # noqa: E731
    await until(locked, "the first instance to take the lock")
    good = Drawing(b"second")
    good.release.set()
    second = asyncio.create_task(b.fetch_or_render("k4", good))
    await until(lambda: b.stats.waits == 1, "the second to wait")
    failing.set()
    with pytest.raises(RuntimeError, match="figure bug"):
        await first
    assert await second == (b"second", "rendered")  # without waiting for the lock to lapse


async def test_entries_over_a_sixteenth_of_the_budget_are_not_shared(instances) -> None:
    cache = await instances(max_bytes=160)
    big, small = Drawing(b"x" * 11), Drawing(b"y" * 10)
    big.release.set()
    small.release.set()
    await cache.fetch_or_render("big", big)
    await cache.fetch_or_render("small", small)
    assert await cache.redis.exists(VALUE + "big") == 0
    assert await cache.redis.get(VALUE + "small") == b"y" * 10
    assert cache.stats.too_large == 1


@FAST
@given(sizes=st.lists(st.integers(1, 64), min_size=1, max_size=40), reads=st.data())
async def test_the_total_stays_within_the_budget_dropping_the_least_recently_used(
    redis_url, sizes, reads
) -> None:
    budget = 16 * 64
    cache = SharedCache(_client(redis_url), budget, 60)
    try:
        await cache.redis.flushall()
        used_order: list[str] = []
        for i, size in enumerate(sizes):
            key = f"e{i}"
            draw = Drawing(bytes(size))
            draw.release.set()
            await cache.fetch_or_render(key, draw)
            used_order.append(key)
            if used_order and reads.draw(st.booleans()):
                again = reads.draw(st.sampled_from(used_order))
                if await cache.redis.exists(VALUE + again):
                    await cache.fetch_or_render(again, draw)  # a hit: now most recent
                    used_order.remove(again)
                    used_order.append(again)
            sizes_now = {k.decode(): int(v) for k, v in (await cache.redis.hgetall(SIZES)).items()}
            used = int(await cache.redis.get(USED) or 0)
            assert used == sum(sizes_now.values()) <= budget
            for k in sizes_now:  # what is counted is there
                assert await cache.redis.exists(VALUE + k)
            # What was dropped is always older than what is kept.
            kept = [k for k in used_order if k in sizes_now]
            assert kept == used_order[len(used_order) - len(kept) :]
    finally:
        await cache.close()


async def test_without_redis_renders_happen_here_and_redis_is_left_alone_a_while() -> None:
    cache = SharedCache(_client(f"redis://127.0.0.1:{free_port()}/0", 0.3), 1 << 20, 60)
    await cache.start()
    try:
        draw = Drawing()
        draw.release.set()
        assert await cache.fetch_or_render("k", draw) == (b"image", "local")
        assert not cache.available and cache.stats.errors == 1
        assert await cache.fetch_or_render("k", draw) == (b"image", "local")
        assert cache.stats.errors == 1 and cache.stats.bypassed == 2 and draw.runs == 2
    finally:
        await cache.close()


async def test_a_hung_redis_costs_one_timeout_then_nothing() -> None:
    with redis_server() as redis:
        cache = SharedCache(_client(redis.url, 0.3), 1 << 20, 60)
        await cache.start()
        try:
            draw = Drawing()
            draw.release.set()
            assert (await cache.fetch_or_render("k", draw))[1] == "rendered"
            redis.pause()
            t0 = time.monotonic()
            assert await cache.fetch_or_render("k2", draw) == (b"image", "local")
            assert time.monotonic() - t0 < 1.5
            t0 = time.monotonic()
            for i in range(5):
                assert (await cache.fetch_or_render(f"k{i + 3}", draw))[1] == "local"
            assert time.monotonic() - t0 < 0.2
        finally:
            redis.resume()
            await cache.close()
