"""What the job routes use, in either mode: submit, look, cancel, delete, download.

Every call to the store is bounded in time (``FIGSERVE_JOB_STORE_TIMEOUT``): a store that is
locked, damaged, stopped or gone answers ``JobsUnavailable`` (the routes' 503 with
``Retry-After``) within that time, never a hang. After a failure, calls fail at once for a short
while instead of each waiting out the bound, so requests never pile up behind a store that does
not answer; readiness (``ready``) says so until the store answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..config import Settings
from .model import JobRecord, JobState, JobsUnavailable, new_job
from .store import JobStore, ResultStream

log = logging.getLogger("figserve.jobs")
T = TypeVar("T")
FAIL_FAST_SECONDS = 1.0  # after a failure, calls fail at once for this long


class JobService:
    """One per serving worker: ``await start()`` when serving starts, ``close()`` after."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        *,
        clock: Callable[[], float] = time.time,
        submitted: Callable[[JobRecord], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        # What happens once a job is recorded: a lane is told (embedded), or its plan queued.
        self.submitted = submitted
        self.owner_key = b""
        self.problem: str | None = "not started"
        self._fail_until = 0.0
        self._changed = asyncio.Event()
        self._upkeep: asyncio.Task[None] | None = None
        self.busy: Callable[[], set[str]] = set
        self.lane: Any = None  # who runs this worker's share of the work, if anyone

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.open()
            await self._load_key()
            await self.store.expire(self.clock())
            self.problem = None
        except JobsUnavailable as exc:
            # The site serves without jobs until the store can be used again.
            self.problem = str(exc)
            log.error("jobs are unavailable: %s", exc)
        self._upkeep = asyncio.create_task(self._upkeep_loop(), name="figserve-jobs-upkeep")

    async def close(self) -> None:
        self.problem = "stopping"
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await self.store.close()

    async def _load_key(self) -> None:
        if self.settings.owner_secret:
            self.owner_key = self.settings.owner_secret.encode()
        elif not self.owner_key:
            self.owner_key = await self.store.owner_key()

    @property
    def ready(self) -> bool:
        """Takes submissions and answers for jobs (started, the store answers)."""
        return self.problem is None

    async def _upkeep_loop(self) -> None:
        # Runs while the worker serves; each step of a round is bounded in time.
        while True:
            try:
                await self.upkeep()
            except (JobsUnavailable, TimeoutError) as exc:
                self._failed(exc)
            except Exception:
                log.exception("job upkeep round failed; trying again")
            await asyncio.sleep(self.settings.job_poll_interval)

    async def upkeep(self) -> None:
        """One round: the store checked (and opened again if it had failed), and expired
        results removed. Readiness follows the check."""
        bound = self.settings.job_store_timeout
        async with asyncio.timeout(bound):
            if self.problem is not None:
                await self.store.open()
                await self._load_key()
            await self.store.check()
        if self.problem is not None:
            log.info("jobs are available again")
            self.problem = None
        async with asyncio.timeout(bound * 5):  # a file per result to remove
            for job_id in await self.store.expire(self.clock()):
                log.info("job %s expired; result removed", job_id)

    # -- calls to the store, bounded ---------------------------------------------------------

    async def _ask(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self.problem is not None and time.monotonic() < self._fail_until:
            raise JobsUnavailable(self.problem)
        try:
            async with asyncio.timeout(self.settings.job_store_timeout):
                out = await fn(*args)
        except (JobsUnavailable, TimeoutError) as exc:
            raise self._failed(exc) from exc
        if self.problem is not None and self.owner_key:
            self.problem = None
        return out

    def _failed(self, exc: BaseException) -> JobsUnavailable:
        if isinstance(exc, JobsUnavailable):
            error = exc
        else:
            seconds = self.settings.job_store_timeout
            error = JobsUnavailable(f"the job store did not answer within {seconds:g} s")
        if self.problem is None:
            log.warning("jobs are unavailable: %s", error)
        self.problem = str(error)
        self._fail_until = time.monotonic() + FAIL_FAST_SECONDS
        return error

    # -- what the routes use ------------------------------------------------------------------

    async def create(
        self,
        output: str,
        items: list[dict[str, Any]],
        client: str | None = None,
        bucket: str | None = None,
        paper: str | None = None,
    ) -> JobRecord:
        """Queue a job of validated items for ``client`` (who may see it), counted against
        ``bucket``'s share. Raises ``TooManyJobs`` (``TooManyClientJobs`` for the bucket's
        share) or ``ResultsFull`` past the limits, ``JobsUnavailable`` if the store does not
        answer."""
        record, limits = new_job(
            self.settings, output, len(items), self.clock(), client, bucket, paper
        )
        await self._ask(self.store.create, record, items, limits)
        if self.submitted is not None:
            # If this fails, the job is recorded all the same: a lane's round finds it.
            with contextlib.suppress(JobsUnavailable):
                await self._ask(self.submitted, record)
        return record

    async def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job; with ``client``, only if that client made it."""
        record = await self._ask(self.store.get, job_id)
        if record is None or (client is not None and record.client != client):
            return None
        return record

    async def recent(self, limit: int = 50, client: str | None = None) -> list[JobRecord]:
        return await self._ask(self.store.recent, limit, client)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Stop a queued or running job: no item begins after this; return it as it is."""
        ttl = self.settings.job_result_ttl
        await self._ask(self.store.end, job_id, JobState.CANCELLED, self.clock(), ttl)
        self.notify()
        return await self.get(job_id)

    async def remove(self, job_id: str) -> None:
        """Delete an ended job and its result now instead of at expiry."""
        record = await self.get(job_id)
        if record is not None and not record.active:
            await self._ask(self.store.delete, record)

    async def result(self, record: JobRecord) -> ResultStream | None:
        """The result of a done job, or None once it is gone."""
        return await self._ask(self.store.result, record)

    # -- waiting (tests, tools) ---------------------------------------------------------------

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait until the job has ended (or no longer exists) and no lane of this process
        works on it any more; return it as it ended. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed  # taken before reading, so no change is missed
                record = await self.store.get(job_id)
                if (record is None or not record.active) and job_id not in self.busy():
                    return record
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.job_poll_interval):
                        await changed.wait()
