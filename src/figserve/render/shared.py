"""The render cache's second level: deterministic renders shared by every instance in Redis.

The renderer asks its in-process LRU first, then this. ``fetch_or_render`` gives the bytes of a
cache key from Redis, or renders them once for every instance: the first instance to miss takes
a short lock (redis-py's ``Lock``, extended while its render runs), renders, stores and announces
the bytes (``PUBLISH``); the others wait for that announcement (one pattern subscription per
process) or, at the latest, for the lock to lapse, and then read the bytes. A lock holder that
dies delays the others by at most ``LOCK_SECONDS``.

The level is bounded: an entry is at most a sixteenth of ``shared_cache_bytes``, entries expire
after ``shared_cache_ttl``, and a script keeps the total within ``shared_cache_bytes`` by
dropping the least recently used entries (its own accounting, so the cache can share a Redis
that must never evict, such as the job queue's).

Redis is optional here: any error or timeout opens a breaker (``scaleout.Breaker``, 5 s), during
which renders happen locally without asking Redis, so a hung Redis costs one request its
(short) timeout, not every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from ..scaleout import Breaker

log = logging.getLogger("figserve.render")

PREFIX = "fs:rc:"
VALUE = PREFIX + "v:"
LOCK = PREFIX + "lock:"
DONE = PREFIX + "done:"
LRU = PREFIX + "lru"  # zset: key -> last use (ms)
SIZES = PREFIX + "size"  # hash: key -> bytes
USED = PREFIX + "used"  # bytes of every entry counted in SIZES
LOCK_SECONDS = 3.0  # a lock lives this long unless its holder extends it
POLL = 0.25  # a waiter looks again at least this often (announcements may be lost)
ENTRY_SHARE = 16

# KEYS: value, lru, sizes. ARGV: key. The value, with its last use recorded.
_GET = """
local v = redis.call('GET', KEYS[1])
if v then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
end
return v
"""

# KEYS: value, lru, sizes, used. ARGV: key, data, ttl seconds, budget, value prefix.
# Store an entry, then drop the least recently used ones until the total fits the budget.
# Entries that expired by their TTL are still counted until they are dropped: the count is an
# upper bound of what the cache holds.
_PUT = """
local size = string.len(ARGV[2])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], size)
local t = redis.call('TIME')
redis.call('ZADD', KEYS[2], t[1] * 1000 + math.floor(t[2] / 1000), ARGV[1])
local used = redis.call('INCRBY', KEYS[4], size - old)
local budget = tonumber(ARGV[4])
local dropped = 0
while used > budget do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
  if not oldest or oldest == ARGV[1] then break end
  local bytes = tonumber(redis.call('HGET', KEYS[3], oldest) or '0')
  redis.call('ZREM', KEYS[2], oldest)
  redis.call('HDEL', KEYS[3], oldest)
  redis.call('UNLINK', ARGV[5] .. oldest)
  used = redis.call('DECRBY', KEYS[4], bytes)
  dropped = dropped + 1
end
return dropped
"""

Source = Literal["redis", "rendered", "local"]


@dataclass
class SharedStats:
    hits: int = 0  # bytes read from Redis
    renders: int = 0  # renders done here while holding the lock
    waits: int = 0  # times this process waited for another's render
    takeovers: int = 0  # locks taken after a holder's lapsed
    stored: int = 0
    too_large: int = 0
    errors: int = 0  # Redis errors and timeouts (each opens the breaker)
    bypassed: int = 0  # renders done locally while the breaker was open


class SharedCache:
    """One per process that renders: ``await start()``, then ``await close()``."""

    def __init__(
        self, client: Redis, max_bytes: int, ttl: float, *, lock_seconds: float = LOCK_SECONDS
    ) -> None:
        self.redis = client
        self.max_bytes = max_bytes
        self.entry_bytes = max(1, max_bytes // ENTRY_SHARE)
        self.ttl = max(1, int(ttl))
        self.lock_seconds = lock_seconds
        self.stats = SharedStats()
        self._breaker = Breaker(
            log, "shared render cache unavailable while %s (%s: %s); rendering without it for %g s"
        )
        self._get = client.register_script(_GET)
        self._put = client.register_script(_PUT)
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._listener: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._listener = asyncio.create_task(self._listen(), name="figserve-shared-cache")

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    # -- the breaker ---------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return self._breaker.available

    def _failed(self, exc: BaseException, doing: str) -> None:
        self.stats.errors += 1
        self._breaker.trip(exc, doing)

    # -- reading, writing, rendering once -------------------------------------------------------

    async def fetch_or_render(
        self, key: str, render: Callable[[], Awaitable[bytes]]
    ) -> tuple[bytes, Source]:
        """The bytes of ``key``: from Redis, or rendered here (once across instances while
        Redis answers), or rendered here without Redis while it does not."""
        lock = self.redis.lock(
            LOCK + key, timeout=self.lock_seconds, blocking=False, thread_local=False
        )
        taken_over = False
        while self.available:
            try:
                data = await self._get(keys=[VALUE + key, LRU, SIZES], args=[key])
                if data is not None:
                    self.stats.hits += 1
                    return data, "redis"
                if await lock.acquire():
                    break
                self.stats.waits += 1
                data = await self._wait_for_other(key, LOCK + key)
                if data is not None:
                    self.stats.hits += 1
                    return data, "redis"
                taken_over = True  # the lock lapsed or was released without bytes
            except RedisError as exc:
                self._failed(exc, "looking up a render")
                break
        else:
            self.stats.bypassed += 1
            return await render(), "local"
        if not self.available:
            self.stats.bypassed += 1
            return await render(), "local"
        self.stats.takeovers += taken_over
        return await self._render_holding(key, lock, render), "rendered"

    async def _render_holding(
        self, key: str, lock: Lock, render: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        keeper = asyncio.create_task(self._keep(lock))
        try:
            data = await render()
        except BaseException:
            await _stop(keeper)
            await self._unlock(lock)  # the others need not wait for it to lapse
            raise
        await _stop(keeper)
        self.stats.renders += 1
        await self._store(key, data)
        await self._unlock(lock)
        return data

    async def _keep(self, lock: Lock) -> None:
        # Extend the lock while the render runs, so only a dead holder lets it lapse.
        while True:
            await asyncio.sleep(self.lock_seconds / 3)
            try:
                await lock.extend(self.lock_seconds, replace_ttl=True)
            except RedisError:  # LockError too: it lapsed and another took it
                return  # the store or unlock that follows reports it

    async def _store(self, key: str, data: bytes) -> None:
        if len(data) > self.entry_bytes:
            self.stats.too_large += 1
            return
        try:
            await self._put(
                keys=[VALUE + key, LRU, SIZES, USED],
                args=[key, data, self.ttl, self.max_bytes, VALUE],
            )
            self.stats.stored += 1
            await self.redis.publish(DONE + key, b"1")
        except RedisError as exc:
            self._failed(exc, "storing a render")

    async def _unlock(self, lock: Lock) -> None:
        if not self.available:
            return  # it lapses by itself
        try:
            await lock.release()
        except LockError:
            pass  # it lapsed (and another may hold it now): nothing of ours to release
        except RedisError as exc:
            self._failed(exc, "releasing a render lock")

    async def _wait_for_other(self, key: str, lock: str) -> bytes | None:
        """Wait while another instance holds the lock; its bytes, or None once the lock is gone
        without them (the holder failed or died)."""
        loop = asyncio.get_running_loop()
        while True:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(key, []).append(future)
            try:
                # Read after registering, so an announcement in between is not missed.
                data = await self.redis.get(VALUE + key)
                if data is not None:
                    return data
                if not await self.redis.exists(lock):
                    return None
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        await future
            finally:
                futures = self._waiters.get(key, [])
                with contextlib.suppress(ValueError):
                    futures.remove(future)
                if not futures:
                    self._waiters.pop(key, None)

    async def _listen(self) -> None:
        """Wake the waiters of a key when its bytes are announced; one subscription for all."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.psubscribe(DONE + "*")
                while True:
                    # A bounded read (None when nothing came): an idle subscription is not an
                    # error, and a dead one is noticed by the health check.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None or message.get("type") != "pmessage":
                        continue
                    channel = message["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    for future in self._waiters.get(channel[len(DONE) :], []):
                        if not future.done():
                            future.set_result(None)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                # Waiters poll meanwhile; subscribe again a little later.
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
