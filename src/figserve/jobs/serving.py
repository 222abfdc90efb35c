"""Jobs as services, built from settings: what a serving worker runs while it serves, and what a
standalone job worker runs. Nothing here knows about HTTP or the web app.

- embedded (no ``FIGSERVE_REDIS_URL``): a ``LocalJobStore`` in the jobs folder, and a
  ``LocalRunner`` per worker unless ``FIGSERVE_JOB_THREADS=0``;
- scale-out: a ``RedisJobStore``; submissions queue a plan on SAQ, and ``JobWorkers`` run the
  tasks in every serving worker (unless ``FIGSERVE_JOB_THREADS=0``) and standalone job worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Settings
from ..figures import Registry
from ..render import Renderer
from ..system import state_dir
from .engine import JobEngine
from .local import LocalRunner
from .local_store import LocalJobStore
from .model import JobRecord
from .service import JobService

if TYPE_CHECKING:
    from .queue import JobWorkers
    from .redis_store import RedisJobStore


def jobs_dir(settings: Settings) -> Path:
    """The configured folder, or ``jobs`` in figserve's state folder (the same for every
    worker of this user)."""
    if settings.jobs_dir:
        path = Path(settings.jobs_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return state_dir("jobs")


@asynccontextmanager
async def serving_jobs(
    settings: Settings, registry: Registry, renderer: Renderer
) -> AsyncIterator[JobService]:
    """The job service of a serving worker, with its lane; stopped on leaving (running jobs
    go back to the queue with what they kept)."""
    if settings.redis_url:
        async with _scaleout(settings, registry, renderer) as service:
            yield service
    else:
        async with _embedded(settings, registry, renderer) as service:
            yield service


def _engine(service: JobService, registry: Registry, renderer: Renderer) -> JobEngine:
    engine = JobEngine(
        service.settings, service.store, registry, renderer, clock=lambda: service.clock()
    )
    engine.changed = service.notify
    service.busy = lambda: engine.busy
    return engine


@asynccontextmanager
async def _embedded(
    settings: Settings, registry: Registry, renderer: Renderer
) -> AsyncIterator[JobService]:
    # A call waits for a lock a quarter of the routes' bound: two in a row still answer in time.
    store = LocalJobStore(jobs_dir(settings), busy_timeout=settings.job_store_timeout / 4)
    service = JobService(settings, store)
    runner = None
    if settings.job_threads:
        runner = LocalRunner(_engine(service, registry, renderer), store)

        async def wake(record: JobRecord) -> None:
            runner.wake()  # this worker claims it at once if it has a free slot

        service.submitted = wake
    service.lane = runner
    await service.start()
    try:
        if runner is not None:
            await runner.start()
        yield service
    finally:
        if runner is not None:
            await runner.close()
        await service.close()


@asynccontextmanager
async def _scaleout(
    settings: Settings, registry: Registry, renderer: Renderer
) -> AsyncIterator[JobService]:
    # Scale-out only: its packages come with the "scale" extra.
    from saq.queue.redis import RedisQueue

    from .queue import JobWorkers
    from .saq_tuning import JOBS_QUEUE, Tuning, enqueue_plan

    store = await _redis_store(settings)
    plans = RedisQueue(store.redis, name=JOBS_QUEUE)
    tuning = Tuning.of(settings)

    async def queue_plan(record: JobRecord) -> None:
        await enqueue_plan(plans, record.id, tuning)

    service = JobService(settings, store, submitted=queue_plan)
    workers: JobWorkers | None = None
    if settings.job_threads:
        workers = JobWorkers(_engine(service, registry, renderer), store)
    service.lane = workers
    await service.start()
    try:
        await plans.connect()
        if workers is not None:
            await workers.start()
        yield service
    finally:
        # Running tasks finish within the grace time or go back to their queue.
        if workers is not None:
            await workers.close()
        await service.close()


async def _redis_store(settings: Settings) -> RedisJobStore:
    from .. import scaleout
    from .redis_store import RedisJobStore

    client = scaleout.jobs_client(settings)
    try:
        # A Redis that cannot be reached at start is a mistake of configuration: say so.
        await scaleout.check(client, settings, "jobs")
    except BaseException:
        await client.aclose()
        raise
    return RedisJobStore(
        client, item_ttl=settings.job_result_ttl, timeout=settings.job_store_timeout
    )


@asynccontextmanager
async def serving_job_workers(
    settings: Settings, registry: Registry, renderer: Renderer
) -> AsyncIterator[JobWorkers]:
    """A standalone job worker's SAQ workers (scale-out mode), stopped on leaving."""
    from .queue import JobWorkers

    store = await _redis_store(settings)
    workers = JobWorkers(JobEngine(settings, store, registry, renderer), store)
    try:
        await workers.start()
        try:
            yield workers
        finally:
            await workers.close()
    finally:
        await store.close()
