"""Running jobs: claim queued jobs from the shared store, render their items, write the result.

Every worker has one ``JobRunner``. It claims queued jobs (any worker's) while it has a free job
slot, and renders their items one at a time in that slot: a separate lower-priority process by
default (see ``work.py``), never the interactive render pool. Before each item the worker's page
renders go first. Progress goes to the store after every item; that write also tells the runner
whether someone cancelled the job, through any worker. A service loop beats the heartbeat of the
jobs this worker runs, marks failed the running jobs of workers that died, and removes expired
results.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..figures import Registry
from . import work
from .process import JobProcess
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
from .work import JobFailed, render_job

log = logging.getLogger("figserve.jobs")

OUTPUTS = {"pdf": "application/pdf", "zip": "application/zip"}
ID_BYTES = 16  # ids are 32 hex digits: unguessable, so a job URL is only known to who got it


def new_job_id() -> str:
    return secrets.token_hex(ID_BYTES)


def is_job_id(text: str) -> bool:
    return len(text) == 2 * ID_BYTES and all(c in "0123456789abcdef" for c in text)


def jobs_dir(settings: Settings) -> Path:
    """The configured folder, or one per user in the temp directory (same for every worker)."""
    if settings.jobs_dir:
        path = Path(settings.jobs_dir).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = Path(tempfile.gettempdir()) / f"figserve-{uid}"
    base.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and base.stat().st_uid != uid:
        # A shared temp directory: refuse a folder someone else made for us.
        raise RuntimeError(f"{base} belongs to another user; set FIGSERVE_JOBS_DIR")
    path = base / "jobs"
    path.mkdir(exist_ok=True)
    return path


def _abort(executor: concurrent.futures.Executor, job_id: str) -> None:
    # Through the job's own executor, after any item still in hand there.
    with contextlib.suppress(Exception):
        executor.submit(work.abort_writer, job_id).result()


async def _settle(future: asyncio.Future[Any]) -> None:
    """Wait for thread work that is being given up; its outcome no longer matters."""
    with contextlib.suppress(Exception):
        await future


EXECUTORS = ("process", "thread")


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
        *,
        busy: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
        store: JobStore | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.dir = jobs_dir(settings)
        self.results = self.dir / "results"
        self.clock = clock
        # How many page renders this worker has queued or running; jobs wait while there are.
        self._busy = busy
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.owner = f"{self.worker}:{secrets.token_hex(4)}"
        self._store_given = store
        self.store: JobStore | None = None
        # Store calls are short but may wait on another worker's write lock: off the loop.
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="figserve-jobdb")
        if settings.job_executor not in EXECUTORS:
            raise ValueError(f"job_executor must be one of {', '.join(EXECUTORS)}")
        # One single-worker executor per slot, made on first use: a job's calls run in order,
        # in the one place that holds its open file.
        self._slots: dict[int, concurrent.futures.Executor] = {}
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
        self.ready = False
        if self._service is not None:
            self._service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._service
        running = [r.task for r in self._running.values()]
        for task in running:
            task.cancel()  # each gives its job back to the queue for the next start
        await asyncio.gather(*running, return_exceptions=True)
        loop = asyncio.get_running_loop()
        for executor in self._slots.values():
            await loop.run_in_executor(None, executor.shutdown)
        if self.store is not None:
            await self._call(self.store.close)
        await loop.run_in_executor(None, self._io.shutdown)

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
        record = JobRecord(
            id=new_job_id(),
            state=JobState.QUEUED,
            output=output,
            total=len(items),
            done=0,
            created=self.clock(),
            client=client,
            bucket=bucket,
        )
        settings = self.settings
        limits = Admission(
            max_active=settings.job_max_active,
            max_bucket_active=settings.job_max_client_active,
            results_quota_bytes=settings.job_results_quota_bytes,
            reserve_bytes=settings.job_max_output_bytes,
        )
        await self._call(self._db.create, record, items, limits)
        self._wake.set()  # this worker claims it at once if it has a free job thread
        return record

    async def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job; with ``client``, only if that client made it."""
        return await self._call(self._db.get, job_id, client)

    async def recent(self, limit: int = 50, client: str | None = None) -> list[JobRecord]:
        return await self._call(self._db.recent, limit, client)

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Stop a queued or running job; its runner notices before its next item."""
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
        """One round: heartbeat, reap dead workers' jobs, expire results, claim queued jobs."""
        async with self._tick_lock:
            await self._tick()

    async def _tick(self) -> None:
        now = self.clock()
        if self._running:
            await self._call(self._db.heartbeat, self.owner, now)
        stale = await self._call(
            self._db.fail_stale,
            now - self.settings.job_stale_after,
            now,
            now + self.settings.job_result_ttl,
        )
        for job_id in stale:
            log.warning("job %s failed: its worker stopped responding", job_id)
            await self._call(self._unlink_files, job_id)  # its partial file
        await self._call(self._expire, now)
        while self._free_slots:
            record = await self._call(self._db.claim, self.owner, self.clock())
            if record is None:
                break
            slot = self._free_slots.pop()
            task = asyncio.create_task(self._run(record, slot), name=f"figserve-job-{record.id}")
            self._running[record.id] = _Running(record, task, slot)

    def _executor(self, slot: int) -> concurrent.futures.Executor:
        executor = self._slots.get(slot)
        if executor is None:
            if self.settings.job_executor == "process":
                executor = JobProcess(self.registry)
                log.info("job process %d started for slot %d", executor.pid, slot)
            else:
                executor = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix=f"figserve-job{slot}", initializer=work.init_thread
                )
            self._slots[slot] = executor
        return executor

    def _expire(self, now: float) -> None:
        for record in self._db.expired(now):
            self._remove(record.id)
            log.info("job %s expired; result removed", record.id)

    def _unlink_files(self, job_id: str) -> None:
        for path in self.results.glob(f"{job_id}.*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _remove_leftovers(self) -> None:
        """Files of jobs that no longer exist, or partial files of jobs that no longer run."""
        for path in self.results.iterdir():
            job_id = path.name.split(".", 1)[0]
            record = self._db.get(job_id) if is_job_id(job_id) else None
            keep = record is not None and (
                record.active  # may be written right now by another worker
                or (record.state is JobState.DONE and not path.name.endswith(".part"))
            )
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                log.info("removed leftover job file %s", path.name)

    # -- running one job ---------------------------------------------------------------------

    async def _run(self, record: JobRecord, slot: int) -> None:
        part = self.results / f"{record.id}.{record.output}.part"
        executor = self._executor(slot)
        # The registry travels with each call to a thread; a job process got it at its start.
        figures = self.registry if self.settings.job_executor == "thread" else None
        inflight: concurrent.futures.Future[Any] | None = None
        opened = False
        loop = asyncio.get_running_loop()

        async def call(fn: Callable[..., Any], *args: Any) -> Any:
            nonlocal inflight
            inflight = executor.submit(fn, *args)
            return await asyncio.wrap_future(inflight, loop=loop)

        log.info("job %s started: %d items to %s", record.id, record.total, record.output)
        index = -1
        try:
            items = await self._call(self._db.items, record.id)
            opened = True  # from here on the slot may hold an open file to abort
            await call(
                work.open_writer,
                record.id,
                record.output,
                part,
                self.settings.png_compress_level,
                record.total,
                record.created,
            )
            for index, item in enumerate(items):
                await self._yield_to_pages()
                size = await call(
                    work.add_item, record.id, index, item, self.settings.max_pixels, figures
                )
                if size > self.settings.job_max_output_bytes:
                    raise JobFailed(
                        f"the result passed the limit of {self.settings.job_max_output_bytes:,} "
                        f"bytes after {index + 1} items; use fewer or smaller items"
                    )
                if not await self._call(
                    self._db.progress, record.id, self.owner, index + 1, self.clock()
                ):
                    log.info("job %s stopped after %d items: cancelled", record.id, index + 1)
                    return
                self._notify()
            size = await call(work.close_writer, record.id)
            opened = False
            if size > self.settings.job_max_output_bytes:
                raise JobFailed(
                    f"the result is {size:,} bytes, over the limit of "
                    f"{self.settings.job_max_output_bytes:,}; use fewer or smaller items"
                )
            os.replace(part, self.result_path(record))
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
                log.info("job %s done: %d items, %d bytes", record.id, record.total, size)
            else:
                await self._call(self._unlink_files, record.id)  # cancelled at the last moment
        except asyncio.CancelledError:
            # The worker is stopping: finish the item in hand, then give the job back.
            if inflight is not None:
                await _settle(asyncio.wrap_future(inflight, loop=loop))
            await self._call(self._db.requeue, record.id, self.owner)
            raise
        except JobFailed as exc:
            await self._fail(record, str(exc))
        except concurrent.futures.BrokenExecutor:
            log.exception("job %s: its job process stopped", record.id)
            opened = False  # the file went with the process
            self._slots.pop(slot, None)  # the next job in this slot gets a new process
            await loop.run_in_executor(None, executor.shutdown)
            await self._fail(record, "the process rendering this job stopped unexpectedly")
        except Exception:
            log.exception("job %s failed at item %d", record.id, index + 1)
            await self._fail(
                record, f"item {index + 1} could not be rendered; the error has been logged"
            )
        finally:
            if opened:
                await _settle(loop.run_in_executor(None, _abort, executor, record.id))
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            self._running.pop(record.id, None)
            self._free_slots.append(slot)
            self._notify()
            self._wake.set()  # a slot is free: look for queued jobs now

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

    async def _yield_to_pages(self) -> None:
        # Page renders of this worker go first; waiting is capped so a busy site still lets
        # jobs progress. The renderer offers no idle event, so its counter is polled.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.job_yield_max
        while self._busy() > 0 and loop.time() < deadline:
            await asyncio.sleep(0.01)


__all__ = [
    "EXECUTORS",
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
