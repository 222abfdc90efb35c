"""The embedded lane: each serving worker claims queued jobs from the shared SQLite store and
runs their items one after another through its renderer's background lane (render processes of
their own, at a lower priority than page renders).

Nothing is lost on a stop: a stopping runner gives its jobs back to the queue with the items it
kept, and a round of every runner takes back the jobs of runners that died (by heartbeat, or at
once for a dead process of this machine), retrying them up to ``job_max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass

from ..render import RenderUnavailable
from ..system import pid_alive
from .engine import JobEngine, RetryItem
from .local_store import LocalJobStore
from .model import JobRecord, JobsUnavailable
from .store import ENDED

log = logging.getLogger("figserve.jobs")
MAX_PASSES = 2  # a job draws its missing items again once (their files were deleted)


@dataclass
class _Running:
    record: JobRecord
    task: asyncio.Task[None]


class LocalRunner:
    """One per serving worker; ``await start()`` when serving starts, ``close()`` after."""

    def __init__(self, engine: JobEngine, store: LocalJobStore) -> None:
        self.engine = engine
        self.store = store
        self.settings = engine.settings
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self.slots = engine.settings.job_threads
        self.running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._round = asyncio.Lock()  # one round at a time, or two could both claim

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._rounds(), name="figserve-jobs")

    def wake(self) -> None:
        self._wake.set()

    async def close(self) -> None:
        """Give every running job back to the queue with its kept items, then stop."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        tasks = [r.task for r in self.running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- rounds -------------------------------------------------------------------------------

    async def _rounds(self) -> None:
        while True:
            try:
                await self.tick()
            except JobsUnavailable as exc:
                log.warning("job round skipped: %s", exc)
            except Exception:
                log.exception("job round failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.job_poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> None:
        """One round: heartbeat, take back dead runners' jobs, claim queued jobs."""
        async with self._round:
            clock = self.engine.clock
            if self.running:
                held = await self.store.heartbeat(self.owner, list(self.running), clock())
                for job_id in set(self.running) - held:
                    # Taken back while this runner could not write (its heartbeat was late):
                    # another runner has it now.
                    log.warning("job %s was taken back from this worker; leaving it", job_id)
                    self.running[job_id].task.cancel()
            await self._take_back(clock())
            while len(self.running) < self.slots and self.engine.renderer.ready:
                record = await self.store.claim(self.owner, clock())
                if record is None:
                    break
                task = asyncio.create_task(self._run(record), name=f"figserve-job-{record.id}")
                self.running[record.id] = _Running(record, task)

    async def _take_back(self, now: float) -> None:
        dead = [o for o in await self.store.owners() if o != self.owner and self._dead_here(o)]
        requeued, failed = await self.store.take_back(
            now - self.settings.job_stale_after,
            dead,
            now,
            self.settings.job_result_ttl,
            self.settings.job_max_attempts,
        )
        for job_id in requeued:
            log.warning("job %s went back to the queue: its worker stopped responding", job_id)
        for job_id in failed:
            log.error("job %s failed: interrupted too many times", job_id)

    def _dead_here(self, owner: str) -> bool:
        """A runner of this machine whose process is gone (no need to wait for its heartbeat)."""
        host, pid, _token = [*owner.rsplit(":", 2), "", ""][:3]
        return host == self.host and pid.isdigit() and not pid_alive(int(pid))

    # -- one job ------------------------------------------------------------------------------

    async def _run(self, record: JobRecord) -> None:
        with self.engine.working(record.id):
            try:
                await self._work(record)
            except asyncio.CancelledError:
                # The worker is stopping: the job goes back to the queue with its items.
                with contextlib.suppress(Exception):
                    await self.store.requeue(record.id, self.owner)
                log.info("job %s went back to the queue", record.id)
                raise
            except (RenderUnavailable, JobsUnavailable) as exc:
                # No render process, or the store did not answer: let a runner go on later.
                with contextlib.suppress(Exception):
                    await self.store.requeue(record.id, self.owner)
                log.warning("job %s went back to the queue: %s", record.id, exc)
            except Exception:
                log.exception("job %s failed", record.id)
                await self.engine.fail(record.id, "the report failed; the error has been logged")
            finally:
                self.running.pop(record.id, None)
                self._wake.set()  # a slot is free: look for queued jobs now

    async def _work(self, record: JobRecord) -> None:
        items = await self.store.items(record.id)
        log.info("job %s started: %d items to %s", record.id, record.total, record.output)
        for _ in range(MAX_PASSES):
            kept = await self.store.done_indexes(record.id)
            missing = [i for i in range(record.total) if i not in kept]
            if not missing:
                break
            for index in missing:
                if await self._item(record, index, items[index]) == ENDED:
                    log.info("job %s stopped after item %d: it ended", record.id, index + 1)
                    return
        await self._assemble(record)

    async def _item(self, record: JobRecord, index: int, item: dict) -> int:
        attempts = self.settings.job_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self.engine.render_item(
                    record, index, item, last_attempt=attempt == attempts
                )
            except RetryItem:
                continue
        raise AssertionError("unreachable: the last attempt never raises RetryItem")

    async def _assemble(self, record: JobRecord) -> None:
        attempts = self.settings.job_max_attempts
        for attempt in range(1, attempts + 1):
            with contextlib.suppress(RetryItem):
                await self.engine.assemble(record, last_attempt=attempt == attempts)
                return
