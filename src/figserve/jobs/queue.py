"""Jobs in scale-out mode: state in Redis (``redis_store.py``), work moved by SAQ.

A submission (``QueuedJobs.create``, on any instance) records the job, checked against the
limits atomically, and queues one ``plan`` task. Job workers (``JobWorkers``: inside the
instances, or standalone with ``python -m figserve.jobs.worker``, on any machine) then run:

- ``plan``: queues one ``render_item`` task per item not yet done, under the key
  ``item:<job>:<index>``, so items render in parallel on every job worker;
- ``render_item``: renders one item in a render process of the worker (its background lane) and
  keeps the bytes in Redis; the task that completes the set of items queues ``assemble``;
- ``assemble``: builds the PDF or ZIP from the items in a render process, streams it into Redis
  within the results' byte budget, and ends the job done.

SAQ delivers at least once, so every task is idempotent: it checks first that the job is still
active and its work not done yet, items are kept by index (a set, not a counter), ``assemble``
is queued under one key, and a result becomes visible only through one conditional script. A
task whose worker dies stops beating its heartbeat; another worker's sweep then runs it again,
up to ``job_max_attempts`` times. A ``watch`` round of the workers ends a job whose task ran out
of attempts (or was lost) with a reason, so no job is left running forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from redis.exceptions import RedisError
from saq import Job, Status, Worker
from saq.queue.redis import RedisQueue

from .. import scaleout
from ..config import Settings
from ..figures import Registry
from ..render import (
    RenderCrashed,
    Renderer,
    RenderFailed,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from .assemble import BuildPdf, BuildZip, JobFailed, item_name, render_job
from .redis_store import RedisJobStore, ResultTooLarge
from .runner import ASSEMBLE_SECONDS_PER_ITEM, new_job
from .service import FILE_CHUNK, JobsUnavailable
from .store import ACTIVE, JobRecord, JobState

log = logging.getLogger("figserve.jobs")

JOBS_QUEUE = "fs-jobs"  # plan and assemble
ITEMS_QUEUE = "fs-items"  # one task per item
DEQUEUE_TIMEOUT = 1.0  # below the jobs client's socket timeout: a blocked read is not an error
WATCH_LOCK = "fs:jobs:watch"
ACQUIRE_SECONDS = 30.0  # a task may wait this long for a render process of its lane
SWEPT = "swept"  # SAQ's error of a task taken back from a worker that stopped beating
T = TypeVar("T")


@dataclass(frozen=True)
class Tuning:
    """SAQ's settings, from figserve's (SAQ's own defaults would abort a dead worker's task a
    minute later instead of running it again)."""

    heartbeat: int  # a task silent this long is taken back by a sweep
    retries: int  # attempts in all
    sweep: int  # seconds between a worker's sweeps (and watch rounds)
    ttl: int  # seconds SAQ keeps an ended task's record
    item_timeout: int  # hard cap of one item task
    grace: int  # seconds a stopping worker lets running tasks finish before re-queueing them

    @classmethod
    def of(cls, settings: Settings) -> Tuning:
        render = settings.render_timeout
        return cls(
            heartbeat=max(1, round(settings.job_stale_after)),
            retries=settings.job_max_attempts,
            sweep=max(1, round(settings.job_poll_interval * 5)),
            ttl=max(60, round(settings.job_result_ttl)),
            item_timeout=round(render + ACQUIRE_SECONDS + 30),
            grace=max(1, round(render + 1)),
        )

    def task(self, timeout: float) -> dict[str, Any]:
        """SAQ job options of a task that may take up to ``timeout`` seconds."""
        return {
            "timeout": max(1, round(timeout)),
            "heartbeat": self.heartbeat,
            "retries": self.retries,
            "retry_delay": 0.5,
            "retry_backoff": 5.0,
            "ttl": self.ttl,
        }


def _queue(settings: Settings, name: str) -> RedisQueue:
    return RedisQueue(scaleout.jobs_client(settings), name=name)


async def _answer(call: Awaitable[T]) -> T:
    try:
        return await call
    except RedisError as exc:
        raise JobsUnavailable(f"the job store did not answer ({type(exc).__name__})") from exc


class QueuedJobs:
    """The job service of an instance in scale-out mode (see ``service.JobService``)."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.tuning = Tuning.of(settings)
        self._redis = scaleout.jobs_client(settings)
        self.store = RedisJobStore(self._redis)
        self._plans = _queue(settings, JOBS_QUEUE)
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        await scaleout.check(self._redis, self.settings, "jobs")
        await self._plans.connect()
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        await _quietly(self._plans.disconnect())
        await _quietly(self._redis.aclose())

    async def create(
        self,
        output: str,
        items: list[dict[str, Any]],
        client: str | None = None,
        bucket: str | None = None,
    ) -> JobRecord:
        record, limits = new_job(self.settings, output, len(items), self.clock(), client, bucket)
        await _answer(self.store.create(record, items, limits))
        # If this fails, the workers' watch round queues the plan of the recorded job.
        await _answer(enqueue_plan(self._plans, record.id, self.tuning))
        return record

    async def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        record = await _answer(self.store.get(job_id))
        if record is None or (client is not None and record.client != client):
            return None
        return record

    async def recent(self, limit: int = 50, client: str | None = None) -> list[JobRecord]:
        return await _answer(self.store.recent(limit, client))

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Cancel the job: its items still queued are skipped, a running one is not kept."""
        ttl = self.settings.job_result_ttl
        await _answer(self.store.end(job_id, JobState.CANCELLED, self.clock(), ttl))
        return await self.get(job_id)

    async def remove(self, job_id: str) -> None:
        record = await self.get(job_id)
        if record is not None:
            await _answer(self.store.delete(record))

    async def result(self, record: JobRecord) -> Any:
        return await _answer(self.store.result(record.id))


async def enqueue_plan(queue: RedisQueue, job_id: str, tuning: Tuning) -> None:
    # A key per job: queued again while incomplete, SAQ keeps the one it has.
    await queue.enqueue("plan", key=f"plan:{job_id}", job_id=job_id, **tuning.task(60))


class JobWorkers:
    """SAQ workers for both queues, rendering through ``renderer``'s background lane.

    One per process that takes jobs: each serving worker of an instance (unless
    ``FIGSERVE_JOB_THREADS=0``) and each standalone job worker. ``job_threads`` items render at
    once, plus one plan or assembly.
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        renderer: Renderer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if settings.job_threads < 1:
            raise ValueError("job workers need FIGSERVE_JOB_THREADS of 1 or more")
        self.settings = settings
        self.registry = registry
        self.renderer = renderer
        self.clock = clock
        self.tuning = Tuning.of(settings)
        self._redis = scaleout.jobs_client(settings)
        self.store = RedisJobStore(self._redis)
        self.jobs_q = _queue(settings, JOBS_QUEUE)
        self.items_q = _queue(settings, ITEMS_QUEUE)
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
        self.ready = False

    async def start(self) -> None:
        await scaleout.check(self._redis, self.settings, "job workers")
        for queue in (self.jobs_q, self.items_q):
            await queue.connect()
        self._tasks = [asyncio.create_task(w.start(), name="figserve-saq") for w in self._workers]
        self._tasks.append(asyncio.create_task(self._watch_loop(), name="figserve-jobs-watch"))
        self.ready = True

    async def close(self) -> None:
        """Let running tasks finish within the grace time; the rest go back to their queue."""
        self.ready = False
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

    # -- the tasks --------------------------------------------------------------------------

    async def _plan(self, ctx: dict[str, Any], *, job_id: str) -> str:
        record = await self.store.get(job_id)
        if record is None or not record.active:
            return "ended"
        done = await self.store.done_indexes(job_id)
        for index in range(record.total):
            if index not in done:
                await self.items_q.enqueue(
                    "render_item",
                    key=f"item:{job_id}:{index}",
                    job_id=job_id,
                    index=index,
                    **self.tuning.task(self.tuning.item_timeout),
                )
            if index % 50 == 49:
                await _beat(ctx)
        if len(done) >= record.total:
            await self._enqueue_assemble(record)
        return "planned"

    async def _render_item(self, ctx: dict[str, Any], *, job_id: str, index: int) -> str:
        record = await self.store.get(job_id)
        if record is None or not record.active:
            return "ended"
        if await self.store.is_done(job_id, index):
            if record.done >= record.total:
                await self._enqueue_assemble(record)
            return "done before"
        item = await self.store.item(job_id, index)
        if item is None:
            return "ended"
        await self.store.start(job_id, self.clock())
        saq_job: Job = ctx["job"]
        last = saq_job.attempts >= saq_job.retries
        try:
            job = render_job(self.registry, item, self.settings.max_pixels)
            data = await _beating(ctx, self.tuning, self.renderer.run_background(job))
        except JobFailed as exc:
            return await self._fail(job_id, str(exc))
        except TooComplex as exc:
            return await self._fail(job_id, f"item {index + 1}: {exc}")
        except RenderFailed as exc:
            log.error("job item %d failed: %s\n%s", index + 1, exc, exc.remote_traceback)
            message = f"item {index + 1} could not be rendered; the error has been logged"
            return await self._fail(job_id, message)
        except (RenderCrashed, RenderTimeout) as exc:
            if last:
                return await self._fail(job_id, f"item {index + 1}: {exc}")
            log.warning("job %s item %d: %s; trying again", job_id, index + 1, exc)
            raise
        except RenderUnavailable:
            raise  # this worker is stopping or broken: another one takes the item
        count = await self.store.put_item(
            job_id, index, data, self.settings.job_result_ttl, self.settings.job_max_output_bytes
        )
        if count == -2:
            return await self._fail(
                job_id,
                f"the result passed the limit of {self.settings.job_max_output_bytes:,} bytes; "
                "use fewer or smaller items",
            )
        if count >= record.total:
            await self._enqueue_assemble(record)
        return "rendered"

    async def _assemble(self, ctx: dict[str, Any], *, job_id: str) -> str:
        record = await self.store.get(job_id)
        if record is None or not record.active:
            return "ended"
        if record.done < record.total:
            return "not ready"  # the last item queues this again
        try:
            with tempfile.TemporaryDirectory(prefix="figserve-assemble-") as tmp:
                out = await self._build(ctx, record, Path(tmp))
                size = out.stat().st_size
                if size > self.settings.job_max_output_bytes:
                    raise JobFailed(
                        f"the result is {size:,} bytes, over the limit of "
                        f"{self.settings.job_max_output_bytes:,}; use fewer or smaller items"
                    )
                member, size = await self.store.write_result(
                    job_id,
                    _file_chunks(out),
                    self.settings.job_results_quota_bytes,
                    self.settings.job_result_ttl,
                )
        except JobFailed as exc:
            return await self._fail(job_id, str(exc))
        except ResultTooLarge:
            return await self._fail(
                job_id, "there was no room for the result; try again when older results expire"
            )
        ttl = self.settings.job_result_ttl
        if await self.store.complete(job_id, member, size, self.clock(), ttl):
            log.info("job %s done: %d items, %d bytes", job_id, record.total, size)
        return "assembled"

    async def _build(self, ctx: dict[str, Any], record: JobRecord, tmp: Path) -> Path:
        files, names = [], []
        for index in range(record.total):
            item = await self.store.item(record.id, index)
            data = await self.store.item_bytes(record.id, index)
            if item is None or data is None:
                raise JobFailed(f"item {index + 1} was lost; submit the job again")
            names.append(item_name(index, record.total, render_job(self.registry, item, 1 << 62)))
            path = tmp / str(index)
            await asyncio.to_thread(path.write_bytes, data)
            files.append(str(path))
        out = tmp / f"result.{record.output}"
        task: Any
        if record.output == "pdf":
            task = BuildPdf(files, str(out))
        else:
            task = BuildZip(list(zip(files, names, strict=True)), str(out), record.created)
        deadline = self.settings.render_timeout + ASSEMBLE_SECONDS_PER_ITEM * record.total
        await _beating(ctx, self.tuning, self.renderer.run_background(task, deadline))
        return out

    async def _enqueue_assemble(self, record: JobRecord) -> None:
        timeout = 60 + self.settings.render_timeout + ASSEMBLE_SECONDS_PER_ITEM * record.total
        await self.jobs_q.enqueue(
            "assemble", key=f"assemble:{record.id}", job_id=record.id, **self.tuning.task(timeout)
        )

    async def _fail(self, job_id: str, error: str) -> str:
        ttl = self.settings.job_result_ttl
        if await self.store.end(job_id, JobState.FAILED, self.clock(), ttl, error):
            log.warning("job %s failed: %s", job_id, error)
        return "failed"

    # -- the watch round ----------------------------------------------------------------------

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tuning.sweep)
            try:
                # One worker a round is enough; the lock lapses by itself.
                if await self._redis.set(WATCH_LOCK, os.getpid(), nx=True, ex=self.tuning.sweep):
                    await self.watch()
            except RedisError as exc:
                log.warning("job watch round failed: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("job watch round failed")

    async def watch(self) -> None:
        """End every active job whose task ran out of attempts; run again what was lost."""
        for job_id in await self.store.active_ids():
            record = await self.store.get(job_id)
            if record is None or not record.active:
                continue
            plan = await self.jobs_q.job(f"plan:{job_id}")
            if plan is None:
                await enqueue_plan(self.jobs_q, job_id, self.tuning)
                continue
            if await self._taken_back(plan, "the job could not be started", job_id):
                continue
            if plan.status is not Status.COMPLETE:
                continue
            done = await self.store.done_indexes(job_id)
            missing = [i for i in range(record.total) if i not in done]
            if not missing:
                task = await self.jobs_q.job(f"assemble:{job_id}")
                if task is None:
                    await self._enqueue_assemble(record)
                else:
                    await self._taken_back(task, "the result could not be built", job_id)
                continue
            tasks = await self.items_q.jobs([f"item:{job_id}:{i}" for i in missing])
            for index, task in zip(missing, tasks, strict=True):
                if task is None:  # lost (a Redis that restarted without its data)
                    await enqueue_plan(self.jobs_q, job_id, self.tuning)
                    break
                what = f"item {index + 1} could not be rendered"
                if await self._taken_back(task, what, job_id) and not task.retryable:
                    break

    async def _taken_back(self, task: Job, what: str, job_id: str) -> bool:
        """Deal with a task that SAQ left ended without success: fail the job once the task is
        out of attempts; queue it again if a sweep that was taking it back never finished (its
        worker died while it ran). True if the task was such a one."""
        if task.status not in (Status.ABORTING, Status.ABORTED, Status.FAILED):
            return False
        if not task.retryable:
            await self._fail(job_id, _gave_up(what, task))
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
    if (task.error or "").strip() == SWEPT:
        return f"{what}: its job worker stopped responding {task.attempts} times"
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


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, FILE_CHUNK * 4):
            yield chunk
    finally:
        f.close()


__all__ = ["ACTIVE", "JobWorkers", "JobsUnavailable", "QueuedJobs", "Tuning"]
