"""Jobs, their items and their results in Redis (scale-out mode), under keys of our own.

SAQ (``queue.py``) moves the work; the state that the routes show and the limits count lives
here, written by small Lua scripts so every change is atomic whichever instance or job worker
makes it, and every change that belongs to a running job is conditional on the job still being
active: a cancel always wins over a late item or a late result.

Keys (``<id>`` is the job id):

- ``fs:job:<id>`` hash: the job record (state, output, total, times, error, client, bucket,
  bytes of its items so far); ``fs:job:<id>:items`` list: its items as stored JSON;
- ``fs:job:<id>:done`` set of finished item indexes, ``fs:item:<id>:<i>`` an item's bytes;
- ``fs:jobs:active`` zset of queued and running jobs (what the limits count);
  ``fs:jobs:recent`` and ``fs:jobs:client:<client>`` zsets by creation time (listings);
- ``fs:res:<id>`` a finished result, written in chunks under ``fs:res:<id>:<token>`` and
  renamed into place when complete, read back in windows; ``fs:res:used``/``:size``/``:exp``
  count the bytes of all results against ``job_results_quota_bytes`` (expired ones are
  reclaimed as new ones are written).

Ended jobs and their results expire after ``job_result_ttl``; active jobs never expire.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from .store import Admission, JobRecord, JobState, ResultsFull, TooManyClientJobs, TooManyJobs

JOB = "fs:job:"
ACTIVE_KEY = "fs:jobs:active"
RECENT_KEY = "fs:jobs:recent"
CLIENT = "fs:jobs:client:"
ITEM = "fs:item:"
RESULT = "fs:res:"
RES_USED = "fs:res:used"
RES_SIZE = "fs:res:size"
RES_EXP = "fs:res:exp"
WRITE_CHUNK = 1 << 20
READ_CHUNK = 256 * 1024
LISTED = 10_000  # newest jobs kept in a listing index; older entries are trimmed


def job_key(job_id: str) -> str:
    return JOB + job_id


def items_key(job_id: str) -> str:
    return JOB + job_id + ":items"


def done_key(job_id: str) -> str:
    return JOB + job_id + ":done"


def item_key(job_id: str, index: int) -> str:
    return f"{ITEM}{job_id}:{index}"


# Shared by the scripts that write results: forget results whose time is up (their keys expire
# by themselves), so their bytes count no longer. KEYS[1..3] = used, size, exp.
_RECLAIM = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function reclaim(used, size, exp)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', exp, '-inf', now_ms())) do
    redis.call('DECRBY', used, tonumber(redis.call('HGET', size, member) or '0'))
    redis.call('HDEL', size, member)
    redis.call('ZREM', exp, member)
  end
end
"""

# KEYS: job, items, active, recent, used, size, exp, client index (or a dummy)
# ARGV: id, created, max_active, max_bucket (-1: none), quota (-1: none), reserve, bucket,
#       client, output, total, then the items' JSON
_CREATE = (
    _RECLAIM
    + """
local active = redis.call('ZCARD', KEYS[3])
if active >= tonumber(ARGV[3]) then return {'busy', active} end
if tonumber(ARGV[4]) >= 0 and ARGV[7] ~= '' then
  local mine = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local f = redis.call('HMGET', 'fs:job:' .. id, 'bucket', 'client')
    if f[1] == ARGV[7] or (ARGV[8] ~= '' and f[2] == ARGV[8]) then mine = mine + 1 end
  end
  if mine >= tonumber(ARGV[4]) then return {'client', mine} end
end
if tonumber(ARGV[5]) >= 0 then
  reclaim(KEYS[5], KEYS[6], KEYS[7])
  local used = tonumber(redis.call('GET', KEYS[5]) or '0')
  if used + (active + 1) * tonumber(ARGV[6]) > tonumber(ARGV[5]) then
    local first = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
    local wait = 0
    if first[2] then wait = (tonumber(first[2]) - now_ms()) / 1000 end
    return {'full', used, tostring(wait), active}
  end
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'state', 'queued', 'output', ARGV[9],
  'total', ARGV[10], 'created', ARGV[2], 'client', ARGV[8], 'bucket', ARGV[7], 'bytes', 0)
redis.call('RPUSH', KEYS[2], unpack(ARGV, 11, 10 + tonumber(ARGV[10])))
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -1 - tonumber(ARGV[11 + tonumber(ARGV[10])] or 0))
if ARGV[8] ~= '' then
  redis.call('ZADD', KEYS[8], ARGV[2], ARGV[1])
end
return {'ok'}
"""
)

# KEYS: job. ARGV: now. The first item to start makes a queued job running.
_START = """
if redis.call('HGET', KEYS[1], 'state') == 'queued' then
  redis.call('HSET', KEYS[1], 'state', 'running', 'started', ARGV[1])
  return 1
end
return 0
"""

# KEYS: job, item, done. ARGV: index, data, ttl seconds, max bytes of the job's items.
# Keep an item's bytes if the job is still active: the number of items done, -1 if the job
# ended meanwhile, -2 if the job's items passed their byte limit.
_PUT_ITEM = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return -1 end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', string.len(ARGV[2]))
  if bytes > tonumber(ARGV[4]) then return -2 end
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return redis.call('SCARD', KEYS[3])
"""

# KEYS: job, items, done, active. ARGV: state, now, expires, ttl seconds, error, item prefix.
# End an active job (failed or cancelled): its item bytes go, the record stays until it expires.
_END = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished', ARGV[2], 'expires', ARGV[3],
  'done', redis.call('SCARD', KEYS[3]))
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
for i = 0, total - 1 do redis.call('UNLINK', ARGV[6] .. i) end
redis.call('UNLINK', KEYS[3])
redis.call('ZREM', KEYS[4], redis.call('HGET', KEYS[1], 'id'))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: tmp, used, size, exp. ARGV: member, chunk, cap, ttl ms.
# Append a chunk to a result being written, within the byte budget of all results.
_APPEND = (
    _RECLAIM
    + """
reclaim(KEYS[2], KEYS[3], KEYS[4])
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
local n = string.len(ARGV[2])
if used + n > tonumber(ARGV[3]) then return -1 end
redis.call('APPEND', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('INCRBY', KEYS[2], n)
redis.call('HINCRBY', KEYS[3], ARGV[1], n)
redis.call('ZADD', KEYS[4], now_ms() + tonumber(ARGV[4]), ARGV[1])
return used + n
"""
)

# KEYS: job, items, done, active, tmp, final, used, size, exp.
# ARGV: id, member, now, expires, ttl seconds, size, item prefix.
# Put a complete result in place and end the job done, if it is still active; else drop it.
_COMPLETE = (
    _RECLAIM
    + """
local function drop(member, key)
  redis.call('DECRBY', KEYS[7], tonumber(redis.call('HGET', KEYS[8], member) or '0'))
  redis.call('HDEL', KEYS[8], member)
  redis.call('ZREM', KEYS[9], member)
  redis.call('UNLINK', key)
end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then
  drop(ARGV[2], KEYS[5])
  return 0
end
local ttl = tonumber(ARGV[5])
redis.call('RENAME', KEYS[5], KEYS[6])
redis.call('EXPIRE', KEYS[6], ttl)
redis.call('HSET', KEYS[8], ARGV[1], redis.call('HGET', KEYS[8], ARGV[2]) or '0')
redis.call('HDEL', KEYS[8], ARGV[2])
redis.call('ZREM', KEYS[9], ARGV[2])
redis.call('ZADD', KEYS[9], now_ms() + ttl * 1000, ARGV[1])
local total = tonumber(redis.call('HGET', KEYS[1], 'total') or '0')
redis.call('HSET', KEYS[1], 'state', 'done', 'finished', ARGV[3], 'expires', ARGV[4],
  'done', total, 'result_bytes', ARGV[6])
for i = 0, total - 1 do redis.call('UNLINK', ARGV[7] .. i) end
redis.call('UNLINK', KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""
)

# KEYS: used, size, exp, key. ARGV: member. Forget a result (or a partial one) and its bytes.
_DROP = """
redis.call('DECRBY', KEYS[1], tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0'))
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('UNLINK', KEYS[4])
"""


class ResultTooLarge(RuntimeError):
    """The results' byte budget has no room for this result."""


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
    )


@dataclass(frozen=True)
class RedisResult:
    """A finished result in Redis, read in windows (never loaded whole)."""

    redis: Redis
    key: str
    size: int

    async def chunks(self, begin: int, end: int) -> AsyncIterator[bytes]:
        pos = begin
        while pos < end:
            part = await self.redis.getrange(self.key, pos, min(pos + READ_CHUNK, end) - 1)
            if not part:
                # Expired or deleted while it was being read: fail the transfer, never end
                # it short as if it were whole.
                raise RuntimeError(f"the result {self.key} went away while it was read")
            pos += len(part)
            yield part


class RedisJobStore:
    """The scripts above, as methods; one per process, over the jobs' Redis client."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._create = redis.register_script(_CREATE)
        self._start = redis.register_script(_START)
        self._put_item = redis.register_script(_PUT_ITEM)
        self._end = redis.register_script(_END)
        self._append = redis.register_script(_APPEND)
        self._complete = redis.register_script(_COMPLETE)
        self._drop = redis.register_script(_DROP)

    async def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: Admission
    ) -> None:
        """Add a queued job if it fits ``limits``, atomically with the counting."""
        client_index = CLIENT + record.client if record.client else CLIENT + "-"
        answer = await self._create(
            keys=[
                job_key(record.id),
                items_key(record.id),
                ACTIVE_KEY,
                RECENT_KEY,
                RES_USED,
                RES_SIZE,
                RES_EXP,
                client_index,
            ],
            args=[
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
                *[json.dumps(item, separators=(",", ":")) for item in items],
                LISTED,
            ],
        )
        verdict = _text(answer[0])
        if verdict == "busy":
            raise TooManyJobs(f"{int(answer[1])} jobs are already queued or running")
        if verdict == "client":
            raise TooManyClientJobs(f"you have {int(answer[1])} jobs queued or running")
        if verdict == "full":
            used, wait, active = int(answer[1]), float(_text(answer[2]) or 0), int(answer[3])
            raise ResultsFull(
                f"job results use {used:,} of {limits.results_quota_bytes:,} bytes and "
                f"{active} jobs may still write up to {limits.reserve_bytes:,} each",
                retry_after=max(1.0, wait),
            )

    async def get(self, job_id: str) -> JobRecord | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(job_key(job_id))
            pipe.scard(done_key(job_id))
            fields, done = await pipe.execute()
        return _record(fields, done) if fields else None

    async def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        index = RECENT_KEY if client is None else CLIENT + client
        ids = [_text(i) or "" for i in await self.redis.zrevrange(index, 0, limit * 2 - 1)]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
                pipe.scard(done_key(job_id))
            answers = await pipe.execute()
        records, gone = [], []
        for job_id, fields, done in zip(ids, answers[::2], answers[1::2], strict=True):
            record = _record(fields, done) if fields else None
            if record is None:
                gone.append(job_id)
            elif client is None or record.client == client:
                records.append(record)
        if gone:  # expired since: drop them from the index
            await self.redis.zrem(index, *gone)
        return records[:limit]

    async def items(self, job_id: str) -> int:
        return int(await self.redis.llen(items_key(job_id)))

    async def item(self, job_id: str, index: int) -> dict[str, Any] | None:
        raw = await self.redis.lindex(items_key(job_id), index)
        return json.loads(raw) if raw is not None else None

    async def state(self, job_id: str) -> JobState | None:
        raw = await self.redis.hget(job_key(job_id), "state")
        return JobState(_text(raw)) if raw is not None else None

    async def is_done(self, job_id: str, index: int) -> bool:
        return bool(await self.redis.sismember(done_key(job_id), str(index)))

    async def done_indexes(self, job_id: str) -> set[int]:
        return {int(_text(i) or 0) for i in await self.redis.smembers(done_key(job_id))}

    async def active_ids(self) -> list[str]:
        return [_text(i) or "" for i in await self.redis.zrange(ACTIVE_KEY, 0, -1)]

    async def start(self, job_id: str, now: float) -> None:
        await self._start(keys=[job_key(job_id)], args=[repr(now)])

    async def put_item(
        self, job_id: str, index: int, data: bytes, ttl: float, max_bytes: int
    ) -> int:
        """Items done so far; -1 if the job is no longer active; -2 past ``max_bytes``."""
        return int(
            await self._put_item(
                keys=[job_key(job_id), item_key(job_id, index), done_key(job_id)],
                args=[index, data, max(1, int(ttl)), max_bytes],
            )
        )

    async def item_bytes(self, job_id: str, index: int) -> bytes | None:
        return await self.redis.get(item_key(job_id, index))

    async def end(
        self, job_id: str, state: JobState, now: float, ttl: float, error: str | None = None
    ) -> bool:
        """End an active job as failed or cancelled; False if it had ended already."""
        return bool(
            await self._end(
                keys=[job_key(job_id), items_key(job_id), done_key(job_id), ACTIVE_KEY],
                args=[
                    state.value,
                    repr(now),
                    repr(now + ttl),
                    max(1, int(ttl)),
                    error or "",
                    f"{ITEM}{job_id}:",
                ],
            )
        )

    async def write_result(
        self, job_id: str, chunks: AsyncIterator[bytes], cap: int, ttl: float
    ) -> tuple[str, int]:
        """Write a result under a key of its own (never seen until ``complete``); returns the
        key and its size. Raises ``ResultTooLarge`` when the budget has no room for it."""
        member = f"{job_id}:{secrets.token_hex(6)}"
        tmp = RESULT + member
        size = 0
        ttl_ms = max(1000, int(ttl * 1000))
        try:
            async for chunk in chunks:
                for start in range(0, len(chunk), WRITE_CHUNK):
                    part = chunk[start : start + WRITE_CHUNK]
                    if (
                        await self._append(
                            keys=[tmp, RES_USED, RES_SIZE, RES_EXP],
                            args=[member, part, cap, ttl_ms],
                        )
                        < 0
                    ):
                        raise ResultTooLarge(
                            f"no room for the result in the results' budget of {cap:,} bytes"
                        )
                    size += len(part)
        except BaseException:
            await self.drop(member)
            raise
        return member, size

    async def complete(self, job_id: str, member: str, size: int, now: float, ttl: float) -> bool:
        """End the job done with the result written as ``member``; False (and the result
        dropped) if the job had ended meanwhile."""
        return bool(
            await self._complete(
                keys=[
                    job_key(job_id),
                    items_key(job_id),
                    done_key(job_id),
                    ACTIVE_KEY,
                    RESULT + member,
                    RESULT + job_id,
                    RES_USED,
                    RES_SIZE,
                    RES_EXP,
                ],
                args=[
                    job_id,
                    member,
                    repr(now),
                    repr(now + ttl),
                    max(1, int(ttl)),
                    size,
                    f"{ITEM}{job_id}:",
                ],
            )
        )

    async def drop(self, member: str) -> None:
        await self._drop(keys=[RES_USED, RES_SIZE, RES_EXP, RESULT + member], args=[member])

    async def result(self, job_id: str) -> RedisResult | None:
        key = RESULT + job_id
        size = int(await self.redis.strlen(key))
        return RedisResult(self.redis, key, size) if size else None

    async def delete(self, record: JobRecord) -> None:
        """Remove an ended job, its result and every key of it now."""
        await self.drop(record.id)
        keys = [job_key(record.id), items_key(record.id), done_key(record.id)]
        keys += [item_key(record.id, i) for i in range(record.total)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.unlink(*keys)
            pipe.zrem(ACTIVE_KEY, record.id)
            pipe.zrem(RECENT_KEY, record.id)
            if record.client:
                pipe.zrem(CLIENT + record.client, record.id)
            await pipe.execute()
