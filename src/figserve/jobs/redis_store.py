"""The job store of scale-out mode: jobs, their items and results in one Redis that every
instance and job worker shares (keys and scripts in ``redis_scripts.py``).

Ended jobs and their results expire after ``job_result_ttl`` by themselves; active jobs never
expire. Redis's errors are said as what they mean for a caller: ``StoreFull`` when it is out of
memory, ``JobsUnavailable`` when it does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import tempfile
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, RedisError

from . import redis_scripts as lua
from .model import (
    Admission,
    JobFailed,
    JobRecord,
    JobState,
    JobsUnavailable,
    ResultsFull,
    StoreFull,
    TooManyClientJobs,
    TooManyJobs,
)

T = TypeVar("T")
JOB = "fs:job:"
ACTIVE_KEY = "fs:jobs:active"
RECENT_KEY = "fs:jobs:recent"
CLIENT = "fs:jobs:client:"
ITEM = "fs:item:"
RESULT = "fs:res:"
RES_USED = "fs:res:used"
RES_SIZE = "fs:res:size"
RES_EXP = "fs:res:exp"
OWNER_KEY = "fs:owner-key"
WRITE_CHUNK = 1 << 20
READ_CHUNK = 256 * 1024
LISTED = 10_000  # newest jobs kept in a listing index; older entries are trimmed
OUT_OF_MEMORY = (
    "Redis is out of memory (its maxmemory is reached) and could not keep the report; raise "
    "Redis's maxmemory, or lower FIGSERVE_JOB_RESULTS_QUOTA_BYTES or "
    "FIGSERVE_SHARED_CACHE_BYTES"
)


def job_key(job_id: str) -> str:
    return JOB + job_id


def items_key(job_id: str) -> str:
    return JOB + job_id + ":items"


def done_key(job_id: str) -> str:
    return JOB + job_id + ":done"


def item_key(job_id: str, index: int) -> str:
    return f"{ITEM}{job_id}:{index}"


async def answer(call: Awaitable[T]) -> T:
    """``call``'s result, with Redis's errors said as what they mean."""
    try:
        return await call
    except OutOfMemoryError as exc:
        raise StoreFull(OUT_OF_MEMORY) from exc
    except (RedisError, OSError) as exc:
        raise JobsUnavailable(f"the job store did not answer ({type(exc).__name__})") from exc


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text not in (None, "") else None


def _record(fields: dict[bytes, bytes], done: int) -> JobRecord | None:
    f = {k.decode(): _text(v) for k, v in fields.items()}
    if "state" not in f:
        return None
    state = JobState(f["state"])
    if state is JobState.DONE or "done" in f:
        done = int(f.get("done") or 0)
    return JobRecord(
        id=f["id"] or "",
        state=state,
        output=f["output"] or "pdf",
        total=int(f["total"] or 0),
        done=done,
        created=float(f["created"] or 0),
        started=_float(f.get("started")),
        finished=_float(f.get("finished")),
        error=f.get("error") or None,
        result_bytes=int(f["result_bytes"]) if f.get("result_bytes") else None,
        expires=_float(f.get("expires")),
        client=f.get("client") or None,
        bucket=f.get("bucket") or None,
        paper=f.get("paper") or None,
    )


@dataclass(frozen=True)
class RedisResult:
    """A finished result in Redis, read in windows (never loaded whole)."""

    redis: Redis
    key: str
    size: int
    timeout: float  # seconds one window may take: a download never hangs on a silent Redis

    async def chunks(self, begin: int, end: int) -> AsyncIterator[bytes]:
        pos = begin
        while pos < end:
            window = self.redis.getrange(self.key, pos, min(pos + READ_CHUNK, end) - 1)
            try:
                async with asyncio.timeout(self.timeout):
                    part = await answer(window)
            except TimeoutError:
                raise JobsUnavailable("the job store stopped answering during a download") from None
            if not part:
                # Expired or deleted while it was being read: fail the transfer, never end it
                # short as if it were whole.
                raise RuntimeError(f"the result {self.key} went away while it was read")
            pos += len(part)
            yield part


@dataclass(frozen=True)
class RedisAssembly:
    parts: list[Path]
    out: Path


class RedisJobStore:
    """One per process, over the jobs' Redis client (which it closes)."""

    def __init__(self, redis: Redis, *, item_ttl: float = 3600.0, timeout: float = 2.0) -> None:
        self.redis = redis
        self.item_ttl = item_ttl
        self.timeout = timeout
        self._create = redis.register_script(lua.CREATE)
        self._start = redis.register_script(lua.START)
        self._put_item = redis.register_script(lua.PUT_ITEM)
        self._end = redis.register_script(lua.END)
        self._append = redis.register_script(lua.APPEND)
        self._complete = redis.register_script(lua.COMPLETE)
        self._drop = redis.register_script(lua.DROP)

    async def open(self) -> None:
        await self.check()

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    async def check(self) -> None:
        await answer(self.redis.ping())

    async def owner_key(self) -> bytes:
        # Made once by whichever process comes first; every instance then reads the same.
        await answer(self.redis.set(OWNER_KEY, secrets.token_hex(32), nx=True))
        return bytes.fromhex(_text(await answer(self.redis.get(OWNER_KEY))) or "")

    # -- what the routes use ------------------------------------------------------------------

    async def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: Admission
    ) -> None:
        client_index = CLIENT + (record.client or "-")
        keys = [job_key(record.id), items_key(record.id), ACTIVE_KEY, RECENT_KEY]
        keys += [RES_USED, RES_SIZE, RES_EXP, client_index]
        args: list[Any] = [
            record.id,
            repr(record.created),
            limits.max_active,
            -1 if limits.max_bucket_active is None else limits.max_bucket_active,
            -1 if limits.results_quota_bytes is None else limits.results_quota_bytes,
            limits.reserve_bytes,
            record.bucket or "",
            record.client or "",
            record.output,
            record.total,
            len(items),
            *[json.dumps(item, separators=(",", ":")) for item in items],
            LISTED,
            record.paper or "",
        ]
        verdict, *rest = await answer(self._create(keys=keys, args=args))
        match _text(verdict):
            case "busy":
                raise TooManyJobs(f"{int(rest[0])} jobs are already queued or running")
            case "client":
                raise TooManyClientJobs(f"you have {int(rest[0])} jobs queued or running")
            case "full":
                used, wait, active = int(rest[0]), float(_text(rest[1]) or 0), int(rest[2])
                raise ResultsFull(
                    f"job results use {used:,} of {limits.results_quota_bytes:,} bytes and "
                    f"{active} jobs may still write up to {limits.reserve_bytes:,} each",
                    retry_after=max(1.0, wait),
                )

    async def get(self, job_id: str) -> JobRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key(job_id))
            pipe.scard(done_key(job_id))
            fields, done = await answer(pipe.execute())
        return _record(fields, done) if fields else None

    async def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        index = RECENT_KEY if client is None else CLIENT + client
        ids = [_text(i) or "" for i in await answer(self.redis.zrevrange(index, 0, limit * 2 - 1))]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
                pipe.scard(done_key(job_id))
            answers = await answer(pipe.execute())
        records, gone = [], []
        for job_id, fields, done in zip(ids, answers[::2], answers[1::2], strict=True):
            record = _record(fields, done) if fields else None
            if record is None:
                gone.append(job_id)
            elif client is None or record.client == client:
                records.append(record)
        if gone:  # expired since: drop them from the index
            await answer(self.redis.zrem(index, *gone))
        return records[:limit]

    async def delete(self, record: JobRecord) -> None:
        await self._drop_result(record.id)
        keys = [job_key(record.id), items_key(record.id), done_key(record.id)]
        keys += [item_key(record.id, i) for i in range(record.total)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.unlink(*keys)
            pipe.zrem(ACTIVE_KEY, record.id)
            pipe.zrem(RECENT_KEY, record.id)
            if record.client:
                pipe.zrem(CLIENT + record.client, record.id)
            await answer(pipe.execute())

    async def result(self, record: JobRecord) -> RedisResult | None:
        key = RESULT + record.id
        size = int(await answer(self.redis.strlen(key)))
        return RedisResult(self.redis, key, size, self.timeout) if size else None

    # -- what the work uses -------------------------------------------------------------------

    async def items(self, job_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(raw) for raw in await answer(self.redis.lrange(items_key(job_id), 0, -1))
        ]

    async def done_indexes(self, job_id: str) -> set[int]:
        members = await answer(self.redis.smembers(done_key(job_id)))
        return {int(_text(i) or 0) for i in members}

    async def active_ids(self) -> list[str]:
        return [_text(i) or "" for i in await answer(self.redis.zrange(ACTIVE_KEY, 0, -1))]

    async def start(self, job_id: str, now: float) -> bool:
        return bool(await answer(self._start(keys=[job_key(job_id)], args=[repr(now)])))

    async def put_item(self, job_id: str, index: int, data: bytes, max_bytes: int) -> int:
        keys = [job_key(job_id), item_key(job_id, index), done_key(job_id)]
        args = [index, data, max(1, int(self.item_ttl)), max_bytes]
        return int(await answer(self._put_item(keys=keys, args=args)))

    async def end(
        self, job_id: str, state: JobState, now: float, ttl: float, error: str | None = None
    ) -> bool:
        keys = [job_key(job_id), items_key(job_id), done_key(job_id), ACTIVE_KEY]
        args = [state.value, repr(now), repr(now + ttl), max(1, int(ttl)), error or ""]
        return bool(await answer(self._end(keys=keys, args=[*args, f"{ITEM}{job_id}:"])))

    @contextlib.asynccontextmanager
    async def assembly(self, record: JobRecord) -> AsyncIterator[RedisAssembly]:
        with tempfile.TemporaryDirectory(prefix="figserve-assemble-") as tmp:
            parts = []
            for index in range(record.total):
                data = await answer(self.redis.get(item_key(record.id, index)))
                if data is None:
                    raise JobFailed(f"item {index + 1} was lost; submit the report again")
                path = Path(tmp) / str(index)
                await asyncio.to_thread(path.write_bytes, data)
                parts.append(path)
            yield RedisAssembly(parts, Path(tmp) / f"result.{record.output}")

    async def put_result(self, record: JobRecord, path: Path, cap: int, ttl: float) -> str:
        """Stream the file into a key of its own (never seen until ``complete``) within the
        results' budget ``cap``."""
        member = f"{record.id}:{secrets.token_hex(6)}"
        keys = [RESULT + member, RES_USED, RES_SIZE, RES_EXP]
        ttl_ms = max(1000, int(ttl * 1000))
        try:
            async for chunk in _file_chunks(path):
                kept = await answer(self._append(keys=keys, args=[member, chunk, cap, ttl_ms]))
                if kept < 0:
                    raise ResultsFull(f"no room for the result in the budget of {cap:,} bytes", 60)
        except BaseException:
            with contextlib.suppress(JobsUnavailable, StoreFull):
                await self._drop_result(member)
            raise
        return member

    async def complete(
        self, record: JobRecord, handle: str, size: int, now: float, ttl: float
    ) -> bool:
        job_id = record.id
        keys = [job_key(job_id), items_key(job_id), done_key(job_id), ACTIVE_KEY]
        keys += [RESULT + handle, RESULT + job_id, RES_USED, RES_SIZE, RES_EXP]
        args = [job_id, handle, repr(now), repr(now + ttl), max(1, int(ttl)), size]
        return await answer(self._complete(keys=keys, args=[*args, f"{ITEM}{job_id}:"])) == 1

    async def expire(self, now: float) -> list[str]:
        return []  # every key of an ended job expires by itself

    async def _drop_result(self, member: str) -> None:
        keys = [RES_USED, RES_SIZE, RES_EXP, RESULT + member]
        await answer(self._drop(keys=keys, args=[member]))


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, WRITE_CHUNK):
            yield chunk
    finally:
        f.close()
