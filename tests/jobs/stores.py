"""Both job stores for the same tests: a real SQLite file in a temp folder, or a real
redis-server (the session's, emptied)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis

from figserve.jobs import JobRecord, JobState, JobStore, new_job_id
from figserve.jobs.local_store import LocalJobStore
from figserve.jobs.redis_store import RedisJobStore

KINDS = ["local", "redis"]
T = TypeVar("T")


async def open_store(kind: str, folder: Path, redis_url: str) -> JobStore:
    store: JobStore
    if kind == "local":
        store = LocalJobStore(folder / "jobs")
    else:
        client = Redis.from_url(redis_url)
        await client.flushall()
        store = RedisJobStore(client, item_ttl=600)
    await store.open()
    return store


def record(client: str | None = "c1", bucket: str | None = None, total: int = 3, **kw) -> JobRecord:
    fields = {"output": "zip", "done": 0, **kw}
    return JobRecord(
        id=new_job_id(),
        state=JobState.QUEUED,
        total=total,
        created=time.time(),
        client=client,
        bucket=bucket or client,
        **fields,
    )


async def finish(store: JobStore, job: JobRecord, data: bytes, ttl: float = 60.0) -> bool:
    """Keep every item of ``job`` and complete it with ``data`` as its result, through the
    store's protocol as the engine does."""
    for index in range(job.total):
        assert await store.put_item(job.id, index, b"item", 10**9) >= 0
    async with store.assembly(job) as where:
        where.out.write_bytes(data)
        handle = await store.put_result(job, where.out, 10**12, ttl)
    return await store.complete(job, handle, len(data), time.time(), ttl)


async def read(store: JobStore, job: JobRecord, begin: int = 0, end: int | None = None) -> bytes:
    result = await store.result(job)
    assert result is not None
    return b"".join([part async for part in result.chunks(begin, end or result.size)])


class SyncStore:
    """A store driven from synchronous code (hypothesis state machines): each call runs on an
    event loop of its own."""

    def __init__(self, kind: str, redis_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="figserve-store-"))
        self.store = self.run(open_store(kind, self.folder, redis_url))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.run(self.store.close())
        self.loop.close()
        shutil.rmtree(self.folder, ignore_errors=True)
