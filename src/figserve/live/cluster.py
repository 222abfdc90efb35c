"""Scale-out: one version check per pair for the whole cluster, and every change told to every
instance.

Redis keeps each pair's record (``fs:ver:r:<figure>:<code>:<params digest>``: the last good data
version, the last check's error and its time) for instances of one release: the code version is
part of the key, so instances of two releases (a rolling deploy) never take each other's checks
or bytes. A pair due for a check is checked by the instance that takes its short lease
(``SET NX PX``, renewed while the check runs); the others wait for the record it writes and take
it. Every record written and every change is published on one channel (``fs:ver:events``), so
instances wake their waiters and tell their own subscribers at once; a message missed (a lost
subscription) is made up for by the records, which every instance reads again when it next
checks a pair, and at once for the pairs it watches when it subscribes again.

Like the shared render cache, this level is optional at run time: a Redis error opens a breaker
for 5 s (``scaleout.Breaker``), during which each instance checks on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..figures.identity import figure_version
from ..scaleout import Breaker
from .entries import Entry
from .probe import Outcome

if TYPE_CHECKING:
    from .versions import Versions

log = logging.getLogger("figserve.live")

PREFIX = "fs:ver:"
RECORD = PREFIX + "r:"
LEASE = PREFIX + "lease:"
EVENTS = PREFIX + "events"
POLL = 0.25  # a waiter reads the record again at least this often (messages may be lost)
LEASE_SECONDS = 3.0  # a lease lives this long unless its holder renews it while it checks
MIN_RECORD_TTL = 60  # seconds; a record lives three refresh periods, at least this

Ask = Callable[[Entry], Awaitable[Outcome]]

# KEYS: lease. ARGV: token, ms. Renew, or release (ms = 0), the lease only while it is ours.
_LEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


def record_key(entry: Entry) -> str:
    digest = hashlib.blake2b(entry.key[1].encode(), digest_size=12).hexdigest()
    return f"{RECORD}{entry.spec.name}:{figure_version(entry.spec)[:16]}:{digest}"


class Cluster:
    """The versions' Redis level of one worker: ``await start(versions)``, ``await close()``."""

    def __init__(self, client: Redis, *, lease_seconds: float = LEASE_SECONDS) -> None:
        self.redis = client
        self.id = uuid.uuid4().hex
        self.lease_ms = int(lease_seconds * 1000)
        self._lease = client.register_script(_LEASE)
        self._versions: Versions | None = None
        self._listener: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._breaker = Breaker(
            log, "data versions: Redis unavailable while %s (%s: %s); checking on this instance "
            "alone for %g s",
        )  # fmt: skip
        self._tasks: set[asyncio.Task[int]] = set()
        self.errors = 0

    async def start(self, versions: Versions) -> None:
        self._versions = versions
        self._listener = asyncio.create_task(self._listen(), name="figserve-versions-events")

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    @property
    def available(self) -> bool:
        return self._breaker.available

    def _failed(self, exc: BaseException, doing: str) -> None:
        self.errors += 1
        self._breaker.trip(exc, doing)

    # -- one check for the cluster -------------------------------------------------------------

    async def check(self, entry: Entry, ask: Ask) -> Outcome:
        """The pair's version: a fresh record of another instance's check, or this instance's
        own check under the pair's lease; without Redis, this instance's own check."""
        key = record_key(entry)
        try:
            while True:
                record = await self._read(key)
                if record is not None and _fresh(record, entry):
                    return record["data"], record["error"], record["checked"], "shared"
                token = uuid.uuid4().hex
                if await self.redis.set(LEASE + key, token, nx=True, px=self.lease_ms):
                    return await self._check_holding(entry, key, token, record, ask)
                await self._wait(key, record)
        except (RedisError, OSError) as exc:
            self._failed(exc, "checking a data version")
            return await ask(entry)

    async def _check_holding(
        self, entry: Entry, key: str, token: str, record: dict[str, Any] | None, ask: Ask
    ) -> Outcome:
        keeper = asyncio.create_task(self._keep(key, token))
        try:
            data, error, when, outcome = await ask(entry)
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        before = record["data"] if record else None
        good = data if data is not None else before
        ttl = max(MIN_RECORD_TTL, int(entry.spec.refresh * 3))
        try:
            text = json.dumps({"data": good, "error": error, "checked": when})
            await self.redis.set(key, text, ex=ttl)
            await self._publish({"k": "checked", "key": key})
            if data is not None and data != before:
                change = {"k": "change", "key": key, "figure": entry.spec.name}
                await self._publish({**change, "params": entry.key[1], "data": data, "at": when})
            await self._lease(keys=[LEASE + key], args=[token, 0])
        except (RedisError, OSError) as exc:
            self._failed(exc, "storing a data version")
        return data, error, when, outcome

    async def _keep(self, key: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            with contextlib.suppress(RedisError, OSError):
                await self._lease(keys=[LEASE + key], args=[token, self.lease_ms])

    async def _read(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.get(key)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            if isinstance(record, dict) and isinstance(record.get("checked"), int | float):
                return record
        except ValueError:
            pass
        return None  # not a record of this release: checked again and overwritten

    async def _wait(self, key: str, seen: dict[str, Any] | None) -> None:
        """Wait while another instance holds the pair's lease, until it wrote the record (or
        its lease is gone: the next round checks here)."""
        event = asyncio.Event()
        self._waiters.setdefault(key, set()).add(event)
        try:
            while True:
                record = await self._read(key)
                if record != seen or not await self.redis.exists(LEASE + key):
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(POLL):
                        await event.wait()
                event.clear()
        finally:
            waiting = self._waiters.get(key, set())
            waiting.discard(event)
            if not waiting:
                self._waiters.pop(key, None)

    # -- telling every instance ----------------------------------------------------------------

    async def announce(self, figure: str, params: dict[str, Any] | None, at: float) -> None:
        """ "This data changed now", to every instance (best effort: each also checks its
        pairs within ``refresh`` seconds)."""
        if not self.available:
            return
        try:
            await self._publish({"k": "recheck", "figure": figure, "params": params, "at": at})
        except (RedisError, OSError) as exc:
            self._failed(exc, "announcing a data change")

    async def _publish(self, message: dict[str, Any]) -> None:
        await self.redis.publish(EVENTS, json.dumps({**message, "from": self.id}))

    async def _listen(self) -> None:
        subscribed_before = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(EVENTS)
                if subscribed_before and self._versions is not None:
                    self._versions.resync()  # what was missed meanwhile is in the records
                subscribed_before = True
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._received(message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _received(self, raw: bytes | str) -> None:
        try:
            message = json.loads(raw)
            kind = message["k"]
        except (ValueError, KeyError, TypeError):
            return
        versions = self._versions
        if kind == "checked" or kind == "change":
            for event in self._waiters.get(str(message.get("key")), ()):
                event.set()
        if versions is None or message.get("from") == self.id:
            return
        if kind == "change":
            entry = versions.entry(str(message.get("figure")), str(message.get("params")))
            data, at = message.get("data"), message.get("at")
            same = entry is not None and record_key(entry) == message.get("key")
            if same and isinstance(data, str) and isinstance(at, int | float):
                assert entry is not None
                versions.adopt(entry, data, None, float(at))
        elif kind == "recheck" and isinstance(message.get("figure"), str):
            params = message.get("params")
            at = message.get("at")
            task = asyncio.create_task(
                versions.recheck(
                    message["figure"],
                    params if isinstance(params, dict) else None,
                    float(at) if isinstance(at, int | float) else time.time(),
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def _fresh(record: dict[str, Any], entry: Entry) -> bool:
    """Whether another instance's check may stand for this one's."""
    checked = float(record["checked"])
    return checked >= entry.due_after and time.time() - checked < entry.spec.refresh
