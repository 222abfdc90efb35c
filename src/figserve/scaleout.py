"""Scale-out mode: the Redis that every instance and job worker shares.

``FIGSERVE_REDIS_URL`` switches it on. Two kinds of client talk to that Redis:

- the render cache's: short timeouts and no retry, because a render can always happen here
  instead (``figserve/render/shared.py`` also stops asking a Redis that failed, for a while);
- the jobs': a few seconds and a few retries with backoff, because a job's state must be read
  and written there.

``check`` is called once at start: a Redis that cannot be reached then is a configuration error,
reported with the URL (password hidden) and what to do, instead of a server that half works.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import RedisError

from .config import Settings, redact

START_TIMEOUT = 5.0  # seconds a starting instance tries to reach Redis
BREAKER_SECONDS = 5.0  # how long a part that can do without Redis stops asking it after an error
JOBS_SOCKET_TIMEOUT = 5.0


class RedisUnavailable(RuntimeError):
    """Redis could not be reached when the instance started."""


def cache_client(settings: Settings) -> Redis:
    timeout = settings.redis_cache_timeout
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=30,
    )


def jobs_client(settings: Settings) -> Redis:
    # SAQ's workers block on the queue for ``dequeue_timeout`` (shorter than this).
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=JOBS_SOCKET_TIMEOUT,
        socket_connect_timeout=2.0,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        health_check_interval=30,
    )


async def check(client: Redis, settings: Settings, what: str) -> None:
    """Raise ``RedisUnavailable`` naming the URL unless ``client`` answers a PING within
    ``START_TIMEOUT`` seconds (a Redis started at the same time may still be loading)."""
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT
    while True:
        try:
            await client.ping()
            return
        except (RedisError, OSError) as exc:
            if asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.25)
                continue
            error = exc
        break
    raise RedisUnavailable(
        f"cannot reach Redis at FIGSERVE_REDIS_URL={redact(settings.redis_url)} for "
        f"{what} ({type(error).__name__}: {error}). Start Redis there (see docs/scale-out.md), "
        "correct FIGSERVE_REDIS_URL, or unset it to run embedded without Redis."
    ) from None


class Breaker:
    """For a part that can do without Redis: after an error it is not asked for ``seconds``.
    ``message`` is logged once per opening, with what was being done, the error and the seconds."""

    def __init__(self, log: logging.Logger, message: str, seconds: float = BREAKER_SECONDS) -> None:
        self._log = log
        self._message = message
        self.seconds = seconds
        self._closed_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._closed_until

    def trip(self, exc: BaseException, doing: str) -> None:
        if self.available:
            self._log.warning(self._message, doing, type(exc).__name__, exc, self.seconds)
        self._closed_until = time.monotonic() + self.seconds
