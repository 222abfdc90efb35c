"""The Redis store of scale-out mode on its own (its contract with the SQLite store is in
``test_store_contract.py``): the byte budget of results counted exactly whatever happens, and a
result that vanishes while it is read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from figserve.jobs import Admission, JobState, ResultsFull
from figserve.jobs.redis_store import RES_SIZE, RES_USED, RedisJobStore
from tests.jobs.stores import record

FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
ITEMS = [{"figure": "waves", "params": {}, "options": {}}] * 3
TTL = 60.0


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    s = RedisJobStore(Redis.from_url(redis_url))
    yield s
    await s.close()


async def kept(store: RedisJobStore, job, data: bytes, cap: int, folder: Path) -> str:
    path = folder / job.id
    path.write_bytes(data)
    return await store.put_result(job, path, cap, TTL)


async def test_a_result_over_the_budget_is_refused_and_leaves_nothing(store, tmp_path) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    with pytest.raises(ResultsFull):
        await kept(store, job, b"z" * 5000, 4000, tmp_path)
    assert int(await store.redis.get(RES_USED) or 0) == 0
    assert await store.redis.keys("fs:res:*:*") == []


async def test_a_result_that_vanishes_while_read_fails_the_transfer(store, tmp_path) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    handle = await kept(store, job, b"q" * 600_000, 10**7, tmp_path)
    assert await store.complete(job, handle, 600_000, time.time(), TTL)
    result = await store.result(job)
    assert result is not None
    reader = result.chunks(0, result.size)
    await reader.__anext__()
    await store.redis.delete(f"fs:res:{job.id}")
    with pytest.raises(RuntimeError, match="went away"):
        async for _ in reader:
            pass


@FAST
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["write", "too_big", "cancel", "delete"]), st.integers(1, 3000)),
        min_size=1,
        max_size=12,
    )
)
async def test_result_bytes_are_counted_exactly_whatever_happens(redis_url, tmp_path, steps):
    client = Redis.from_url(redis_url)
    store = RedisJobStore(client)
    cap = 6000
    try:
        await client.flushall()
        counted: dict[str, int] = {}
        for action, size in steps:
            job = record()
            await store.create(job, ITEMS, Admission(max_active=100))
            if action == "too_big":
                with pytest.raises(ResultsFull):
                    await kept(store, job, b"x" * (cap + 1), cap, tmp_path)
                continue
            try:
                handle = await kept(store, job, b"x" * size, cap, tmp_path)
            except ResultsFull:
                continue
            if action == "cancel":
                await store.end(job.id, JobState.CANCELLED, time.time(), TTL)
            if await store.complete(job, handle, size, time.time(), TTL):
                counted[job.id] = size
            if action == "delete" and job.id in counted:
                await store.delete((await store.get(job.id)) or job)
                del counted[job.id]
            sizes = {k.decode(): int(v) for k, v in (await client.hgetall(RES_SIZE)).items()}
            assert sizes == counted
            assert int(await client.get(RES_USED) or 0) == sum(counted.values()) <= cap
    finally:
        await store.close()
