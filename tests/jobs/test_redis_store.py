"""The job store of scale-out mode against a real redis-server: limits counted atomically with
creation, conditional updates (a cancel always wins), and results within their byte budget."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from figserve.jobs import (
    Admission,
    JobRecord,
    JobState,
    ResultsFull,
    TooManyClientJobs,
    TooManyJobs,
)
from figserve.jobs.redis_store import RES_SIZE, RES_USED, RedisJobStore, ResultTooLarge
from figserve.jobs.runner import new_job_id

FAST = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
ITEMS = [{"figure": "waves", "params": {}, "format": "pdf"}] * 3
TTL = 60.0


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisJobStore]:
    client = Redis.from_url(redis_url)
    yield RedisJobStore(client)
    await client.aclose()


def record(client: str | None = "c1", bucket: str | None = None, total: int = 3) -> JobRecord:
    return JobRecord(
        id=new_job_id(),
        state=JobState.QUEUED,
        output="pdf",
        total=total,
        done=0,
        created=time.time(),
        client=client,
        bucket=bucket or client,
    )


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def read(store: RedisJobStore, job_id: str, begin: int = 0, end: int | None = None) -> bytes:
    result = await store.result(job_id)
    assert result is not None
    return b"".join([part async for part in result.chunks(begin, end or result.size)])


async def test_a_job_is_recorded_with_its_items_and_shown_to_its_client_only(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    got = await store.get(job.id)
    assert got is not None and got.state is JobState.QUEUED and got.total == 3
    assert got.client == "c1" and got.done == 0
    assert await store.item(job.id, 2) == ITEMS[2]
    assert [r.id for r in await store.recent(10, "c1")] == [job.id]
    assert await store.recent(10, "someone else") == []
    assert [r.id for r in await store.recent(10)] == [job.id]


async def test_active_jobs_are_limited_in_all_and_per_client(store) -> None:
    limits = Admission(max_active=3, max_bucket_active=2)
    await store.create(record("a"), ITEMS, limits)
    await store.create(record("a"), ITEMS, limits)
    with pytest.raises(TooManyClientJobs):
        await store.create(record("a"), ITEMS, limits)
    # A client's first job, made in a shared bucket before it had its cookie, counts too.
    shared = record("b", bucket="ip:x")
    await store.create(shared, ITEMS, limits)
    with pytest.raises(TooManyJobs):
        await store.create(record("c"), ITEMS, limits)
    # Ending a job gives its place back.
    assert await store.end(shared.id, JobState.CANCELLED, time.time(), TTL)
    await store.create(record("b"), ITEMS, limits)


async def test_results_and_what_active_jobs_may_write_fit_the_quota(store) -> None:
    limits = Admission(max_active=10, results_quota_bytes=10_000, reserve_bytes=3_000)
    done = record()
    await store.create(done, ITEMS, limits)
    member, size = await store.write_result(done.id, chunks_of(b"r" * 4_000), 10_000, TTL)
    assert await store.complete(done.id, member, size, time.time(), TTL)
    await store.create(record(), ITEMS, limits)  # 4,000 + 1 x 3,000 fits
    await store.create(record(), ITEMS, limits)  # 4,000 + 2 x 3,000 fits, just
    with pytest.raises(ResultsFull) as full:
        await store.create(record(), ITEMS, limits)  # 4,000 + 3 x 3,000 does not
    assert 1 <= full.value.retry_after <= TTL
    await store.delete((await store.get(done.id)) or done)
    await store.create(record(), ITEMS, limits)


async def test_a_cancel_wins_over_late_items_and_a_late_result(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    assert await store.put_item(job.id, 0, b"one", TTL, 10**6) == 1
    assert await store.put_item(job.id, 0, b"one", TTL, 10**6) == 1  # a duplicate run: once
    assert await store.end(job.id, JobState.CANCELLED, time.time(), TTL)
    assert not await store.end(job.id, JobState.FAILED, time.time(), TTL, "late")
    assert await store.put_item(job.id, 1, b"two", TTL, 10**6) == -1
    member, size = await store.write_result(job.id, chunks_of(b"x" * 50), 10**6, TTL)
    assert not await store.complete(job.id, member, size, time.time(), TTL)
    got = await store.get(job.id)
    assert got is not None and got.state is JobState.CANCELLED and got.error is None
    assert await store.result(job.id) is None
    assert int(await store.redis.get(RES_USED) or 0) == 0
    assert await store.item_bytes(job.id, 0) is None  # items go with the cancel
    assert await store.redis.ttl(f"fs:job:{job.id}") > 0  # and the record expires


async def test_the_items_of_a_job_are_bounded_in_bytes(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    assert await store.put_item(job.id, 0, b"a" * 60, TTL, 100) == 1
    assert await store.put_item(job.id, 1, b"b" * 60, TTL, 100) == -2


async def test_a_result_is_read_in_windows_and_by_range(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one write chunk and read window
    member, size = await store.write_result(job.id, chunks_of(data, 300_000), 10**7, TTL)
    assert size == len(data)
    assert await store.result(job.id) is None  # not visible before it is complete
    assert await store.complete(job.id, member, size, time.time(), TTL)
    assert await read(store, job.id) == data
    assert await read(store, job.id, 1000, 700_000) == data[1000:700_000]
    got = await store.get(job.id)
    assert got is not None and got.state is JobState.DONE and got.result_bytes == len(data)
    assert got.done == 3


async def test_a_result_over_the_budget_is_refused_and_leaves_nothing(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    with pytest.raises(ResultTooLarge):
        await store.write_result(job.id, chunks_of(b"z" * 5000), 4000, TTL)
    assert int(await store.redis.get(RES_USED) or 0) == 0
    assert await store.redis.keys("fs:res:*:*") == []


async def test_a_result_that_vanishes_while_read_fails_the_transfer(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    member, size = await store.write_result(job.id, chunks_of(b"q" * 600_000), 10**7, TTL)
    await store.complete(job.id, member, size, time.time(), TTL)
    result = await store.result(job.id)
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
async def test_result_bytes_are_counted_exactly_whatever_happens(redis_url, steps) -> None:
    client = Redis.from_url(redis_url)
    store = RedisJobStore(client)
    cap = 6000
    try:
        await client.flushall()
        kept: dict[str, int] = {}
        for action, size in steps:
            job = record()
            await store.create(job, ITEMS, Admission(max_active=100))
            if action == "too_big":
                with pytest.raises(ResultTooLarge):
                    await store.write_result(job.id, chunks_of(b"x" * (cap + 1)), cap, TTL)
                continue
            try:
                member, n = await store.write_result(job.id, chunks_of(b"x" * size), cap, TTL)
            except ResultTooLarge:
                continue
            if action == "cancel":
                await store.end(job.id, JobState.CANCELLED, time.time(), TTL)
            if await store.complete(job.id, member, n, time.time(), TTL):
                kept[job.id] = n
            if action == "delete" and job.id in kept:
                await store.delete((await store.get(job.id)) or job)
                del kept[job.id]
            sizes = {k.decode(): int(v) for k, v in (await client.hgetall(RES_SIZE)).items()}
            assert sizes == kept
            assert int(await client.get(RES_USED) or 0) == sum(kept.values()) <= cap
    finally:
        await client.aclose()
