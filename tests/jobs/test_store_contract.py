"""The job store contract (``figserve/jobs/store.py``), checked the same way on both stores: the
SQLite store of embedded mode and the Redis store of scale-out mode, each a real one.

Limits counted atomically with creation, items kept once by index, a cancel that always wins over
late work, results visible only with ``done``, and (by state machine) no job ever lost or moved
backwards whatever the interleaving of submissions, items, ends, results and deletes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from figserve.jobs import (
    Admission,
    JobFailed,
    JobState,
    JobStore,
    ResultsFull,
    TooManyClientJobs,
    TooManyJobs,
)
from figserve.jobs.store import ENDED, TOO_LARGE
from tests.jobs.stores import KINDS, SyncStore, finish, open_store, read, record
from tests.support.redis import RedisServer

FAST = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
ITEMS = [{"figure": "waves", "params": {}, "options": {}}] * 3
TTL = 60.0


@pytest.fixture(params=KINDS)
async def store(request, tmp_path: Path, redis_service: RedisServer) -> AsyncIterator[JobStore]:
    opened = await open_store(request.param, tmp_path, redis_service.url)
    yield opened
    await opened.close()


async def test_a_job_is_recorded_with_its_items_and_shown_by_client(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    got = await store.get(job.id)
    assert got is not None and (got.state, got.total, got.done) == (JobState.QUEUED, 3, 0)
    assert got.client == "c1" and got.output == "zip"
    assert await store.items(job.id) == ITEMS
    assert [r.id for r in await store.recent(10, "c1")] == [job.id]
    assert await store.recent(10, "someone else") == []
    assert [r.id for r in await store.recent(10)] == [job.id]
    assert await store.get("0" * 32) is None


async def test_active_jobs_are_limited_in_all_and_per_client(store) -> None:
    limits = Admission(max_active=3, max_bucket_active=2)
    await store.create(record("a"), ITEMS, limits)
    await store.create(record("a"), ITEMS, limits)
    with pytest.raises(TooManyClientJobs):
        await store.create(record("a"), ITEMS, limits)
    # A client's first job, made in a shared bucket before it had its cookie, counts too.
    shared = record("b", bucket="ip:x")
    await store.create(shared, ITEMS, limits)
    with pytest.raises(TooManyJobs) as full:
        await store.create(record("c"), ITEMS, limits)
    assert type(full.value) is TooManyJobs  # the limit of all jobs comes first
    # Ending a job gives its place back.
    assert await store.end(shared.id, JobState.CANCELLED, time.time(), TTL)
    await store.create(record("b"), ITEMS, limits)


async def test_results_and_what_active_jobs_may_write_fit_the_quota(store) -> None:
    limits = Admission(max_active=10, results_quota_bytes=10_000, reserve_bytes=3_000)
    done = record(total=1)
    await store.create(done, ITEMS[:1], limits)
    assert await finish(store, done, b"r" * 4_000)
    await store.create(record(), ITEMS, limits)  # 4,000 + 1 x 3,000 fits
    await store.create(record(), ITEMS, limits)  # 4,000 + 2 x 3,000 fits, just
    with pytest.raises(ResultsFull) as full:
        await store.create(record(), ITEMS, limits)  # 4,000 + 3 x 3,000 does not
    assert 1 <= full.value.retry_after <= TTL  # when the stored result expires
    await store.delete((await store.get(done.id)) or done)
    await store.create(record(), ITEMS, limits)


async def test_items_are_kept_once_by_index_and_a_cancel_wins_over_late_work(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    assert await store.start(job.id, time.time())
    assert not await store.start(job.id, time.time())  # once
    assert await store.put_item(job.id, 0, b"one", 10**6) == 1
    assert await store.put_item(job.id, 0, b"one", 10**6) == 1  # a task run twice: kept once
    assert await store.put_item(job.id, 2, b"three", 10**6) == 2
    assert await store.done_indexes(job.id) == {0, 2}
    assert (await store.get(job.id)).done == 2
    assert await store.put_item(job.id, 1, b"two", 10**6) == 3
    async with store.assembly(job) as where:
        assert [p.read_bytes() for p in where.parts] == [b"one", b"two", b"three"]
        where.out.write_bytes(b"x" * 50)
        handle = await store.put_result(job, where.out, 10**6, TTL)
    assert await store.end(job.id, JobState.CANCELLED, time.time(), TTL)
    assert not await store.end(job.id, JobState.FAILED, time.time(), TTL, "late")
    assert await store.put_item(job.id, 1, b"two", 10**6) == ENDED
    assert not await store.complete(job, handle, 50, time.time(), TTL)
    got = await store.get(job.id)
    assert got is not None and got.state is JobState.CANCELLED and got.error is None
    assert await store.result(got) is None
    assert await store.done_indexes(job.id) == set()  # items go with the cancel


async def test_an_assembly_with_an_item_missing_fails_the_job(store) -> None:
    job = record(total=2)
    await store.create(job, ITEMS[:2], Admission(max_active=5))
    await store.put_item(job.id, 0, b"one", 10**6)
    with pytest.raises(JobFailed, match="item 2"):
        async with store.assembly(job):
            pass


async def test_the_items_of_a_job_are_bounded_in_bytes(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    assert await store.put_item(job.id, 0, b"a" * 60, 100) == 1
    assert await store.put_item(job.id, 1, b"b" * 60, 100) == TOO_LARGE


async def test_a_result_is_read_in_windows_and_by_range(store) -> None:
    job = record()
    await store.create(job, ITEMS, Admission(max_active=5))
    data = bytes(range(256)) * 5000  # 1.28 MB: more than one write chunk and read window
    assert await finish(store, job, data)
    assert await read(store, job) == data
    assert await read(store, job, 1000, 700_000) == data[1000:700_000]
    got = await store.get(job.id)
    assert got is not None and got.state is JobState.DONE and got.result_bytes == len(data)
    assert got.done == 3 and got.finished is not None and got.expires is not None


async def test_every_process_gets_the_same_owner_key(store, tmp_path, redis_service) -> None:
    key = await store.owner_key()
    assert len(key) == 32
    assert await store.owner_key() == key
    # Another process of the same server (same folder, same Redis) reads the same key.
    kind = "local" if type(store).__name__.startswith("Local") else "redis"
    other = await _reopen(kind, tmp_path, redis_service.url)
    try:
        assert await other.owner_key() == key
    finally:
        await other.close()


async def _reopen(kind: str, folder: Path, redis_url: str) -> JobStore:
    if kind == "local":
        from figserve.jobs.local_store import LocalJobStore

        store: JobStore = LocalJobStore(folder / "jobs")
    else:
        from redis.asyncio import Redis

        from figserve.jobs.redis_store import RedisJobStore

        store = RedisJobStore(Redis.from_url(redis_url))
    await store.open()
    return store


async def test_ended_jobs_expire_with_their_result(store) -> None:
    job = record(total=1)
    await store.create(job, ITEMS[:1], Admission(max_active=5))
    assert await finish(store, job, b"result", ttl=1.0)
    deadline = time.monotonic() + 10
    while True:  # a condition checked often within a deadline: the TTL is real time
        await store.expire(time.time())
        if await store.get(job.id) is None:
            break
        assert time.monotonic() < deadline, "the job never expired"
        await asyncio.sleep(0.05)
    assert [r.id for r in await store.recent(10)] == []


events = st.lists(
    st.tuples(
        st.sampled_from(["create", "end"]),
        st.sampled_from(["a", "b", "c"]),  # client
        st.booleans(),  # made with its cookie (else in the address's bucket)
    ),
    max_size=25,
)


@pytest.mark.parametrize("kind", KINDS)
@FAST
@given(events=events, total=st.integers(1, 4), share=st.integers(1, 3))
def test_admission_matches_a_model_of_the_limits(kind, redis_service, events, total, share):
    sync = SyncStore(kind, redis_service.url)
    limits = Admission(max_active=total, max_bucket_active=share)
    active: list = []
    try:
        for what, client, with_cookie in events:
            if what == "end":
                if active:
                    ended = active.pop(0)
                    sync.run(sync.store.end(ended.id, JobState.CANCELLED, time.time(), TTL))
                continue
            new = record(client=client, bucket=client if with_cookie else "ip")
            in_share = sum(r.bucket == new.bucket or r.client == new.client for r in active)
            expected: type[Exception] | None = None
            if len(active) >= total:
                expected = TooManyJobs
            elif in_share >= share:
                expected = TooManyClientJobs
            if expected is None:
                sync.run(sync.store.create(new, [], limits))
                active.append(new)
            else:
                with pytest.raises(expected) as info:
                    sync.run(sync.store.create(new, [], limits))
                assert type(info.value) is expected
    finally:
        sync.close()


@dataclass
class _Job:
    total: int
    state: JobState = JobState.QUEUED
    kept: set[int] = field(default_factory=set)
    result: bytes | None = None


class JobsNeverLost(RuleBasedStateMachine):
    """Any interleaving of submissions, starts, items (delivered once or twice, early or late),
    cancels, failures, results (in time or too late) and deletes: every job stays until it is
    deleted, an ended job never becomes active again, its items are exactly those kept while it
    was active, and a result is visible exactly when the job is done."""

    kind = "local"
    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.sync = SyncStore(self.kind, self.redis_url)
        self.store = self.sync.store
        self.jobs: dict[str, _Job] = {}
        self.records: dict[str, object] = {}
        self.deleted: set[str] = set()

    def teardown(self) -> None:
        self.sync.close()

    def _pick(self, data, active: bool | None = None) -> str | None:
        # In the order of submission: ids are random, so their order would not replay.
        ids = [
            i
            for i, j in self.jobs.items()
            if active is None or (j.state in (JobState.QUEUED, JobState.RUNNING)) == active
        ]
        return data.draw(st.sampled_from(ids)) if ids else None

    @rule(total=st.integers(1, 4))
    def submit(self, total: int) -> None:
        job = record(total=total)
        self.sync.run(self.store.create(job, [{}] * total, Admission(10**6)))
        self.jobs[job.id] = _Job(total)
        self.records[job.id] = job

    @rule(data=st.data())
    def start(self, data) -> None:
        job_id = self._pick(data)
        if job_id is None:
            return
        started = self.sync.run(self.store.start(job_id, time.time()))
        model = self.jobs[job_id]
        assert started == (model.state is JobState.QUEUED)
        if started:
            model.state = JobState.RUNNING

    @rule(data=st.data(), index=st.integers(0, 3))
    def put_item(self, data, index: int) -> None:
        job_id = self._pick(data)
        if job_id is None:
            return
        model = self.jobs[job_id]
        index %= model.total
        count = self.sync.run(self.store.put_item(job_id, index, b"i%d" % index, 10**9))
        if model.state in (JobState.QUEUED, JobState.RUNNING):
            model.kept.add(index)
            assert count == len(model.kept)
        else:
            assert count == ENDED

    @rule(data=st.data(), state=st.sampled_from([JobState.CANCELLED, JobState.FAILED]))
    def end(self, data, state: JobState) -> None:
        job_id = self._pick(data)
        if job_id is None:
            return
        model = self.jobs[job_id]
        ended = self.sync.run(self.store.end(job_id, state, time.time(), TTL, "why"))
        assert ended == (model.state in (JobState.QUEUED, JobState.RUNNING))
        if ended:
            model.state = state

    @rule(data=st.data(), late=st.booleans())
    def complete(self, data, late: bool) -> None:
        job_id = self._pick(data, active=True)
        if job_id is None or len(self.jobs[job_id].kept) < self.jobs[job_id].total:
            return
        model, job = self.jobs[job_id], self.records[job_id]
        result = b"result of " + job_id.encode()

        async def build() -> bool:
            async with self.store.assembly(job) as where:
                where.out.write_bytes(result)
                handle = await self.store.put_result(job, where.out, 10**9, TTL)
            if late:  # a cancel comes between the result's writing and its completion
                await self.store.end(job_id, JobState.CANCELLED, time.time(), TTL)
            return await self.store.complete(job, handle, len(result), time.time(), TTL)

        completed = self.sync.run(build())
        assert completed == (not late)
        model.state = JobState.CANCELLED if late else JobState.DONE
        model.result = None if late else result

    @rule(data=st.data())
    def delete(self, data) -> None:
        job_id = self._pick(data, active=False)
        if job_id is not None:
            self.sync.run(self.store.delete(self.records[job_id]))
            del self.jobs[job_id]
            self.deleted.add(job_id)

    @invariant()
    def nothing_is_lost(self) -> None:
        for job_id, model in self.jobs.items():
            got = self.sync.run(self.store.get(job_id))
            assert got is not None, "a job vanished"
            assert got.state is model.state
            if got.active:
                assert got.done == len(model.kept)
                assert self.sync.run(self.store.done_indexes(job_id)) == model.kept
            if model.state is JobState.DONE:
                assert got.done == model.total and got.result_bytes == len(model.result or b"")
                assert self.sync.run(read(self.store, got)) == model.result
            else:
                assert self.sync.run(self.store.result(got)) is None
        for job_id in self.deleted:
            assert self.sync.run(self.store.get(job_id)) is None
        listed = {r.id for r in self.sync.run(self.store.recent(1000))}
        assert listed == set(self.jobs)


@pytest.mark.parametrize("kind", KINDS)
def test_jobs_are_never_lost(kind: str, redis_service: RedisServer) -> None:
    machine = type(f"JobsNeverLost_{kind}", (JobsNeverLost,), {"kind": kind})
    machine.redis_url = redis_service.url
    machine.TestCase.settings = settings(
        max_examples=25,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    machine.TestCase().runTest()
