"""Running jobs: claim queued jobs from the shared store, render their items, build the result.

Every worker has one ``JobRunner``. It claims queued jobs (any worker's) while it has a free job
slot and renders their items one at a time through the worker's renderer, in its background
lane: render processes of their own, at a lower priority than page renders. Each item is kept
in a file, and progress goes to the store after every item; that write also tells the runner
whether someone cancelled the job, through any worker. The result is then assembled from the
item files in a render process.

Nothing is lost on a stop: a stopping runner gives its jobs back to the queue with their
progress, and a service loop takes back the jobs of workers that died (by heartbeat, or at once
for a dead process of this machine), retrying them up to ``job_max_attempts`` times.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from ..system import pid_alive, private_dir
from .assemble import (
    BuildPdf,
    BuildZip,
    JobFailed,
    item_name,
    remove_tree,
    render_job,
    write_part,
)
from .plan import OUTPUTS
from .service import FileResult
from .store import (
    Admission,
    JobRecord,
    JobState,
    JobStore,
    ResultsFull,
    SQLiteJobStore,
    TooManyClientJobs,
    TooManyJobs,
)

log = logging.getLogger("figserve.jobs")

ID_BYTES = 16  # ids are 32 hex digits: unguessable, so a job URL is only known to who got it
ITEM_RETRIES = 2  # an item whose render process died or was too slow is tried this often more
# Seconds the result's assembly may take per item (reading and writing a page or an entry).
ASSEMBLE_SECONDS_PER_ITEM = 0.1


def new_job_id() -> str:
    return secrets.token_hex(ID_BYTES)


def new_job(
    settings: Settings,
    output: str,
    total: int,
    now: float,
    client: str | None,
    bucket: str | None,
) -> tuple[JobRecord, Admission]:
    """A new queued job's record and the limits it must fit, in either mode."""
    record = JobRecord(
        id=new_job_id(),
        state=JobState.QUEUED,
        output=output,
        total=total,
        done=0,
        created=now,
        client=client,
        bucket=bucket,
    )
    limits = Admission(
        max_active=settings.job_max_active,
        max_bucket_active=settings.job_max_client_active,
        results_quota_bytes=settings.job_results_quota_bytes,
        reserve_bytes=settings.job_max_output_bytes,
    )
    return record, limits


def is_job_id(text: str) -> bool:
    return len(text) == 2 * ID_BYTES and all(c in "0123456789abcdef" for c in text)


def jobs_dir(settings: Settings) -> Path:
    """The configured folder, or one per user in the temp directory (same for every worker)."""
    if settings.jobs_dir:
        path = Path(settings.jobs_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return private_dir("jobs")


@dataclass
class _Running:
    record: JobRecord
    task: asyncio.Task[None]
    slot: int


class JobRunner:
    """Create one per serving worker: ``await start()`` when serving starts, ``close()`` after."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        renderer: Renderer,
        *,
        clock: Callable[[], float] = time.time,
        store: JobStore | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.renderer = renderer
        self.dir = jobs_dir(settings)
        self.results = self.dir / "results"
        self.clock = clock
        self.host = socket.gethostname()
        self.owner = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._store_given = store
        self.store: JobStore | None = None
        # Store calls are short but may wait on another worker's write lock: off the loop.
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="figserve-jobdb")
        self._free_slots = list(range(settings.job_threads))
        self._running: dict[str, _Running] = {}
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) whenever a job of this worker changes
        self._service: asyncio.Task[None] | None = None
        self._tick_lock = asyncio.Lock()  # one round at a time, or two could both claim
        self.ready = False

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._call(self._open)
        self._service = asyncio.create_task(self._service_loop(), name="figserve-jobs")
        self.ready = True

    def _open(self) -> None:
        self.results.mkdir(exist_ok=True)
        self.store = self._store_given or SQLiteJobStore(self.dir / "jobs.sqlite3")
        self._expire(self.clock())
        self._remove_leftovers()

    async def close(self) -> None:
        """Give every running job back to the queue with its progress, then stop."""
        self.ready = False
        if self._service is not None:
            self._service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._service
        running = [r.task for r in self._running.values()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self.store is not None:
            await self._call(self.store.close)
        await asyncio.get_running_loop().run_in_executor(None, self._io.shutdown)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    @property
    def _db(self) -> JobStore:
        if self.store is None:
            raise RuntimeError("the job runner is not started")
        return self.store

    # -- what the routes use -----------------------------------------------------------------

    async def create(
        self,
        output: str,
        items: list[dict[str, Any]],
        client: str | None = None,
        bucket: str | None = None,
    ) -> JobRecord:
        """Queue a job of validated items for ``client`` (who may see it), counted against
        ``bucket``'s share. Raises ``TooManyJobs`` (``TooManyClientJobs`` for the bucket's
        share) at the active-jobs limits, ``ResultsFull`` when the results' disk budget has no
        room for it."""
        record, limits = new_job(self.settings, output, len(items), self.clock(), client, bucket)
        await self._call(self._db.create, record, items, limits)
        self._wake.set()  # this worker claims it at once if it has a free job thread
        return record

    async def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job; with ``client``, only if that client made it."""
        return await self._call(self._db.get, job_id, client)

    async def recent(self, limit: int = 50, client: str | None = None) -> list[JobRecord]:
        return await self._call(self._db.recent, limit, client)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Stop a queued or running job; its runner notices after its current item."""
        now = self.clock()
        record = await self._call(self._db.cancel, job_id, now, now + self.settings.job_result_ttl)
        self._notify()
        return record

    async def remove(self, job_id: str) -> None:
        """Delete an ended job and its result now instead of at expiry."""
        await self._call(self._remove, job_id)

    def _remove(self, job_id: str) -> None:
        self._unlink_files(job_id)
        self._db.delete(job_id)

    def result_path(self, record: JobRecord) -> Path:
        return self.results / f"{record.id}.{record.output}"

    async def result(self, record: JobRecord) -> FileResult | None:
        """The result file of a done job, or None once it is gone."""
        path = self.result_path(record)
        try:
            size = await self._call(lambda: path.stat().st_size)
        except FileNotFoundError:
            return None
        return FileResult(path, size)

    def _parts(self, job_id: str) -> Path:
        return self.results / f"{job_id}.parts"

    async def wait(self, job_id: str, timeout: float) -> JobRecord | None:
        """Wait until the job has ended (or no longer exists) and this worker has cleaned up
        after it; return it as it ended.

        Jobs of this worker wake the waiter as they change; jobs of other workers are checked
        every poll interval. Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed  # taken before reading, so no change is missed
                record = await self.get(job_id)
                if (record is None or not record.active) and job_id not in self._running:
                    return record
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.job_poll_interval):
                        await changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the service loop --------------------------------------------------------------------

    async def _service_loop(self) -> None:
        # Runs for as long as the worker serves; each round is bounded (a few store calls).
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("job service round failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.job_poll_interval):
                    await self._wake.wait()
            self._wake.clear()

    async def tick(self) -> None:
        """One round: heartbeat, take back dead workers' jobs, expire results, claim jobs."""
        async with self._tick_lock:
            await self._tick()

    async def _tick(self) -> None:
        now = self.clock()
        if self._running:
            await self._call(self._db.heartbeat, self.owner, now)
        await self._call(self._take_back, now)
        await self._call(self._expire, now)
        while self._free_slots and self.renderer.ready:
            record = await self._call(self._db.claim, self.owner, self.clock())
            if record is None:
                break
            slot = self._free_slots.pop()
            task = asyncio.create_task(self._run(record, slot), name=f"figserve-job-{record.id}")
            self._running[record.id] = _Running(record, task, slot)

    def _take_back(self, now: float) -> None:
        dead = [
            job.owner
            for job in self._db.running()
            if job.owner and job.owner != self.owner and self._dead_here(job.owner)
        ]
        requeued, failed = self._db.take_back(
            now - self.settings.job_stale_after,
            dead,
            now,
            now + self.settings.job_result_ttl,
            self.settings.job_max_attempts,
        )
        for job_id in requeued:
            log.warning("job %s went back to the queue: its worker stopped responding", job_id)
        for job_id in failed:
            log.error("job %s failed: interrupted too many times", job_id)
            self._unlink_files(job_id)

    def _dead_here(self, owner: str) -> bool:
        """A runner of this machine whose process is gone (no need to wait for its heartbeat)."""
        host, pid, _token = [*owner.rsplit(":", 2), "", ""][:3]
        return host == self.host and pid.isdigit() and not pid_alive(int(pid))

    def _expire(self, now: float) -> None:
        for record in self._db.expired(now):
            self._remove(record.id)
            log.info("job %s expired; result removed", record.id)

    def _unlink_files(self, job_id: str) -> None:
        remove_tree(str(self._parts(job_id)))
        for path in self.results.glob(f"{job_id}.*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _remove_leftovers(self) -> None:
        """Files of jobs that no longer exist, or that no job can use any more."""
        for path in self.results.iterdir():
            job_id = path.name.split(".", 1)[0]
            record = self._db.get(job_id) if is_job_id(job_id) else None
            keep = record is not None and (
                # item files and a result being built: the job may be resumed or running
                record.active
                or (record.state is JobState.DONE and path.name == self.result_path(record).name)
            )
            if not keep:
                if path.is_dir():
                    remove_tree(str(path))
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                log.info("removed leftover job file %s", path.name)

    # -- running one job ---------------------------------------------------------------------

    async def _run(self, record: JobRecord, slot: int) -> None:
        index = record.done
        try:
            log.info(
                "job %s started: %d items to %s%s",
                record.id,
                record.total,
                record.output,
                f", resuming after {record.done}" if record.done else "",
            )
            items = await self._call(self._db.items, record.id)
            parts = self._parts(record.id)
            await self._call(lambda: parts.mkdir(exist_ok=True))
            start, size = await self._call(_kept_items, parts, record.done)
            names: list[str] = []
            for index, item in enumerate(items):
                job = render_job(self.registry, item, self.settings.max_pixels)
                names.append(item_name(index, record.total, job))
                if index < start:
                    continue  # rendered before the job was given back
                data = await self._render_item(job, index)
                size += len(data)
                if size > self.settings.job_max_output_bytes:
                    raise JobFailed(
                        f"the result passed the limit of {self.settings.job_max_output_bytes:,} "
                        f"bytes after {index + 1} items; use fewer or smaller items"
                    )
                await self._call(write_part, str(parts / str(index)), data)
                if not await self._call(
                    self._db.progress, record.id, self.owner, index + 1, self.clock()
                ):
                    log.info("job %s stopped after %d items: cancelled", record.id, index + 1)
                    await self._call(self._unlink_files, record.id)
                    return
                self._notify()
            await self._finish(record, parts, names)
        except asyncio.CancelledError:
            # The worker is stopping: the job goes back to the queue with its item files.
            with contextlib.suppress(Exception):
                await self._call(self._db.requeue, record.id, self.owner)
            log.info("job %s went back to the queue after %d items", record.id, index)
            raise
        except RenderUnavailable:
            # The render processes are stopping or cannot start: let another runner go on.
            await self._call(self._db.requeue, record.id, self.owner)
            log.warning("job %s went back to the queue: no render process", record.id)
        except JobFailed as exc:
            await self._fail(record, str(exc))
        except TooComplex as exc:
            await self._fail(record, f"item {index + 1}: {exc}")
        except Exception:
            log.exception("job %s failed at item %d", record.id, index + 1)
            await self._fail(
                record, f"item {index + 1} could not be rendered; the error has been logged"
            )
        finally:
            self._running.pop(record.id, None)
            self._free_slots.append(slot)
            self._notify()
            self._wake.set()  # a slot is free: look for queued jobs now

    async def _render_item(self, job: Any, index: int) -> bytes:
        for attempt in range(ITEM_RETRIES + 1):
            try:
                return await self.renderer.run_background(job)
            except (RenderCrashed, RenderTimeout) as exc:
                if attempt == ITEM_RETRIES:
                    raise JobFailed(f"item {index + 1}: {exc}") from None
                log.warning("job item %d: %s; trying again", index + 1, exc)
            except RenderFailed as exc:
                log.error("job item %d failed: %s\n%s", index + 1, exc, exc.remote_traceback)
                raise JobFailed(
                    f"item {index + 1} could not be rendered; the error has been logged"
                ) from None
        raise AssertionError("unreachable")

    async def _finish(self, record: JobRecord, parts: Path, names: list[str]) -> None:
        building = self.results / f"{record.id}.{record.output}.building"
        files = [str(parts / str(i)) for i in range(len(names))]
        if record.output == "pdf":
            task: Any = BuildPdf(files, str(building))
        else:
            task = BuildZip(list(zip(files, names, strict=True)), str(building), record.created)
        deadline = self.settings.render_timeout + ASSEMBLE_SECONDS_PER_ITEM * record.total
        size = await self.renderer.run_background(task, deadline)
        if size > self.settings.job_max_output_bytes:
            raise JobFailed(
                f"the result is {size:,} bytes, over the limit of "
                f"{self.settings.job_max_output_bytes:,}; use fewer or smaller items"
            )
        await self._call(os.replace, building, self.result_path(record))
        now = self.clock()
        done = await self._call(
            self._db.finish,
            record.id,
            self.owner,
            JobState.DONE,
            now,
            now + self.settings.job_result_ttl,
            None,
            size,
        )
        if done:
            await self._call(remove_tree, str(parts))
            log.info("job %s done: %d items, %d bytes", record.id, record.total, size)
        else:
            await self._call(self._unlink_files, record.id)  # cancelled at the last moment

    async def _fail(self, record: JobRecord, error: str) -> None:
        now = self.clock()
        await self._call(
            self._db.finish,
            record.id,
            self.owner,
            JobState.FAILED,
            now,
            now + self.settings.job_result_ttl,
            error,
        )
        await self._call(self._unlink_files, record.id)
        log.warning("job %s failed: %s", record.id, error)


def _kept_items(parts: Path, done: int) -> tuple[int, int]:
    """Where a resumed job goes on: the items already in files (of the first ``done``) and
    their size in bytes."""
    total = 0
    for index in range(done):
        try:
            total += (parts / str(index)).stat().st_size
        except FileNotFoundError:
            return index, total
    return done, total


__all__ = [
    "OUTPUTS",
    "JobFailed",
    "JobRunner",
    "ResultsFull",
    "TooManyClientJobs",
    "TooManyJobs",
    "is_job_id",
    "jobs_dir",
    "new_job_id",
    "render_job",
]
