"""The scale-out lane: SAQ workers on the shared Redis run a job's work as tasks, in parallel
across every job worker (inside the instances, or standalone: ``python -m figserve.jobs.worker``).

- ``plan``: queues one ``render_item`` task per item not kept yet, under the key
  ``item:<job>:<index>``;
- ``render_item``: one item through the engine (a render process of this worker's background
  lane); the task that completes the set queues ``assemble``;
- ``assemble``: the result through the engine, once.

SAQ delivers at least once, so every task is idempotent: it checks that the job is still active
and its work not done yet, items are kept by index (a set), ``assemble`` is queued under one key,
and a result becomes visible only through one conditional step. A task whose worker dies stops
beating its heartbeat; another worker's sweep runs it again, up to ``job_max_attempts`` times. A
``watch`` round ends a job whose task ran out of attempts (or was lost) with a reason, so no job
is left running forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.exceptions import RedisError
from saq import Job, Status, Worker
from saq.queue.redis import RedisQueue

from .. import scaleout
from .engine import JobEngine, RetryItem
from .model import JobRecord, JobsUnavailable, StoreFull
from .redis_store import OUT_OF_MEMORY, RedisJobStore
from .saq_tuning import ITEMS_QUEUE, JOBS_QUEUE, Tuning, enqueue_plan

log = logging.getLogger("figserve.jobs")
DEQUEUE_TIMEOUT = 1.0  # below the jobs client's socket timeout: a blocked read is not an error
WATCH_LOCK = "fs:jobs:watch"
SWEPT = "swept"  # SAQ's error of a task taken back from a worker that stopped beating
T = TypeVar("T")


class JobWorkers:
    """SAQ workers for both queues, working through ``engine``. One per process that takes
    jobs: each serving worker of an instance (unless ``FIGSERVE_JOB_THREADS=0``) and each
    standalone job worker. ``job_threads`` items render at once, plus one plan or assembly."""

    def __init__(self, engine: JobEngine, store: RedisJobStore) -> None:
        settings = engine.settings
        if settings.job_threads < 1:
            raise ValueError("job workers need FIGSERVE_JOB_THREADS of 1 or more")
        self.engine = engine
        self.store = store
        self.settings = settings
        self.tuning = Tuning.of(settings)
        self._redis = scaleout.jobs_client(settings)
        self.jobs_q = RedisQueue(self._redis, name=JOBS_QUEUE)
        self.items_q = RedisQueue(self._redis, name=ITEMS_QUEUE)
        timers = {"sweep": self.tuning.sweep, "abort": 1, "schedule": 1, "worker_info": 10}
        common: dict[str, Any] = {
            "dequeue_timeout": DEQUEUE_TIMEOUT,
            "timers": timers,
            "shutdown_grace_period_s": self.tuning.grace,
            "cancellation_hard_deadline_s": 2.0,
        }
        self._workers = [
            Worker(
                self.items_q,
                [("render_item", self._render_item)],
                concurrency=settings.job_threads,
                **common,
            ),
            Worker(
                self.jobs_q,
                [("plan", self._plan), ("assemble", self._assemble)],
                concurrency=1,
                **common,
            ),
        ]
        for worker in self._workers:
            worker.SIGNALS = []  # whoever runs this process handles its signals
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await scaleout.check(self._redis, self.settings, "job workers")
        for queue in (self.jobs_q, self.items_q):
            await queue.connect()
        self._tasks = [asyncio.create_task(w.start(), name="figserve-saq") for w in self._workers]
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="figserve-jobs-watch"))

    async def close(self) -> None:
        """Let running tasks finish within the grace time; the rest go back to their queue."""
        self._tasks[-1].cancel()
        for worker in self._workers:
            worker.event.set()  # no new task is taken
            for task in list(worker.tasks):
                # SAQ's upkeep loops sleep up to their period before they look at the event;
                # they hold no job, so they stop now. Running tasks get the grace time.
                if task.get_name() != "process":
                    task.cancel()
        await asyncio.gather(*(w.stop() for w in self._workers), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for queue in (self.jobs_q, self.items_q):
            await _quietly(queue.disconnect())
        await _quietly(self._redis.aclose())

    # -- the tasks ----------------------------------------------------------------------------

    async def _active(self, job_id: str) -> JobRecord | None:
        record = await self.store.get(job_id)
        return record if record is not None and record.active else None

    async def _plan(self, ctx: dict[str, Any], *, job_id: str) -> str:
        record = await self._active(job_id)
        if record is None:
            return "ended"
        kept = await self.store.done_indexes(job_id)
        for index in range(record.total):
            if index not in kept:
                await self.items_q.enqueue(
                    "render_item",
                    key=f"item:{job_id}:{index}",
                    job_id=job_id,
                    index=index,
                    **self.tuning.task(self.tuning.item_timeout),
                )
            if index % 50 == 49:
                await _beat(ctx)
        if len(kept) >= record.total:
            await self._enqueue_assemble(record)
        return "planned"

    async def _render_item(self, ctx: dict[str, Any], *, job_id: str, index: int) -> str:
        record = await self._active(job_id)
        if record is None:
            return "ended"
        if index in await self.store.done_indexes(job_id):
            if record.done >= record.total:
                await self._enqueue_assemble(record)
            return "done before"
        items = await self.store.items(job_id)
        if index >= len(items):
            return "ended"
        try:
            await self.store.start(job_id, self.engine.clock())
        except StoreFull as exc:
            await self.engine.fail(job_id, str(exc))
            return "failed"
        task: Job = ctx["job"]
        last = task.attempts >= task.retries
        with self.engine.working(job_id):
            work = self.engine.render_item(record, index, items[index], last_attempt=last)
            count = await _beating(ctx, self.tuning, work)
        if count >= record.total:
            await self._enqueue_assemble(record)
        return "rendered" if count >= 0 else "ended"

    async def _assemble(self, ctx: dict[str, Any], *, job_id: str) -> str:
        record = await self._active(job_id)
        if record is None:
            return "ended"
        if record.done < record.total:
            return "not ready"  # the last item queues this again
        task: Job = ctx["job"]
        with self.engine.working(job_id):
            work = self.engine.assemble(record, last_attempt=task.attempts >= task.retries)
            await _beating(ctx, self.tuning, work)
        return "assembled"

    async def _enqueue_assemble(self, record: JobRecord) -> None:
        timeout = self.tuning.assemble_timeout(self.settings, record.total)
        await self.jobs_q.enqueue(
            "assemble", key=f"assemble:{record.id}", job_id=record.id, **self.tuning.task(timeout)
        )

    # -- the watch round ----------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.sweep)
            try:
                # One worker a round is enough; the lock lapses by itself.
                if await self._redis.set(WATCH_LOCK, "1", nx=True, ex=self.tuning.sweep):
                    await self.watch()
            except (RedisError, JobsUnavailable) as exc:
                log.warning("job watch round failed: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("job watch round failed")

    async def watch(self) -> None:
        """End every active job whose task ran out of attempts; run again what was lost."""
        for job_id in await self.store.active_ids():
            record = await self._active(job_id)
            if record is not None:
                await self._watch_job(record)

    async def _watch_job(self, record: JobRecord) -> None:
        job_id = record.id
        plan = await self.jobs_q.job(f"plan:{job_id}")
        if plan is None:
            await enqueue_plan(self.jobs_q, job_id, self.tuning)
            return
        if await self._taken_back(plan, "the job could not be started", job_id):
            return
        if plan.status is not Status.COMPLETE:
            return
        kept = await self.store.done_indexes(job_id)
        missing = [i for i in range(record.total) if i not in kept]
        if not missing:
            task = await self.jobs_q.job(f"assemble:{job_id}")
            if task is None:
                await self._enqueue_assemble(record)
            else:
                await self._taken_back(task, "the result could not be built", job_id)
            return
        tasks = await self.items_q.jobs([f"item:{job_id}:{i}" for i in missing])
        for index, task in zip(missing, tasks, strict=True):
            if task is None:  # lost (a Redis that restarted without its data)
                await enqueue_plan(self.jobs_q, job_id, self.tuning)
                return
            what = f"item {index + 1} could not be rendered"
            if await self._taken_back(task, what, job_id) and not task.retryable:
                return

    async def _taken_back(self, task: Job, what: str, job_id: str) -> bool:
        """Deal with a task that SAQ left ended without success: fail the job once the task is
        out of attempts; queue it again if a sweep that was taking it back never finished (its
        worker died while it ran). True if the task was such a one."""
        if task.status not in (Status.ABORTING, Status.ABORTED, Status.FAILED):
            return False
        if not task.retryable:
            await self.engine.fail(job_id, _gave_up(what, task))
            return True
        # A sweep aborts a task, waits 5 s for it to stop, then queues it again: leave it that
        # long, then finish what it started.
        last = max(task.touched, task.started, task.queued, task.completed) / 1000
        if time.time() - last > self.tuning.heartbeat + self.tuning.sweep + 10:
            log.warning(
                "job %s: %s was taken back but never queued again; queueing it", job_id, task.key
            )
            await task.get_queue().retry(task, SWEPT)
        return True


def _gave_up(what: str, task: Job) -> str:
    error = task.error or ""
    if error.strip() == SWEPT:
        return f"{what}: its job worker stopped responding {task.attempts} times"
    if "OutOfMemoryError" in error or "StoreFull" in error:
        return f"{what}: {OUT_OF_MEMORY}"
    return f"{what} after {task.attempts} attempts; the error has been logged"


async def _quietly(closing: Awaitable[None]) -> None:
    """Close a connection; a Redis that is gone has nothing left to close."""
    with contextlib.suppress(RedisError, OSError):
        await closing


async def _beat(ctx: dict[str, Any]) -> None:
    with contextlib.suppress(RedisError):
        await ctx["job"].update()


async def _beating(ctx: dict[str, Any], tuning: Tuning, work: Awaitable[T]) -> T:
    """Await ``work`` while telling SAQ the task is alive, so no sweep takes it back."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(tuning.heartbeat / 3)
            await _beat(ctx)

    beater = asyncio.create_task(beat())
    try:
        return await work
    finally:
        beater.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beater


__all__ = ["JobWorkers", "RetryItem"]
