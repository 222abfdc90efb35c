"""The job store of embedded mode: ``sqlite.JobsDatabase`` plus a results folder beside it.

Layout of the jobs folder (``FIGSERVE_JOBS_DIR``, shared by every worker of one server)::

    jobs.sqlite3            the jobs (and -wal, -shm, .lock)
    owner.key               the secret that signs owner tokens, made once
    results/<id>.parts/<i>  the items of an active job, one file each
    results/<id>.<output>   a finished result
    results/<id>.<output>.building-<t>, .kept-<t>   a result being built, or built but not
                            visible yet

Every call runs in one thread of the store's own, off the event loop. Folders that went away
(a temp cleaner, an operator) are made again when next needed; an item whose file went away is
no longer counted as kept, so its job draws it again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .model import Admission, JobFailed, JobRecord, JobState, is_job_id
from .sqlite import JobsDatabase
from .store import ENDED

log = logging.getLogger("figserve.jobs")
T = TypeVar("T")
FILE_CHUNK = 256 * 1024
KEY_BYTES = 32


@dataclass(frozen=True)
class FileResult:
    """A result in a file, read in windows off the event loop."""

    path: Path
    size: int

    async def chunks(self, begin: int, end: int) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        f = await loop.run_in_executor(None, self.path.open, "rb")
        try:
            await loop.run_in_executor(None, f.seek, begin)
            pos = begin
            while pos < end:
                part = await loop.run_in_executor(None, f.read, min(FILE_CHUNK, end - pos))
                if not part:
                    raise RuntimeError(f"the result {self.path.name} ended early")
                pos += len(part)
                yield part
        finally:
            await loop.run_in_executor(None, f.close)


@dataclass(frozen=True)
class LocalAssembly:
    parts: list[Path]
    out: Path


class LocalJobStore:
    """See the module's notes; one per worker process, over the folder every worker shares."""

    def __init__(self, folder: Path, *, busy_timeout: float = 1.5) -> None:
        self.folder = folder
        self.results = folder / "results"
        self.db = JobsDatabase(folder / "jobs.sqlite3", busy_timeout)
        self._io = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="figserve-jobdb")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn, *args)

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        self.results.mkdir(parents=True, exist_ok=True)
        self.db.check()
        self._remove_leftovers()

    async def close(self) -> None:
        await self._call(self.db.close)
        await asyncio.get_running_loop().run_in_executor(None, self._io.shutdown)

    async def check(self) -> None:
        await self._call(self.db.check)

    async def owner_key(self) -> bytes:
        return await self._call(self._owner_key)

    def _owner_key(self) -> bytes:
        path = self.folder / "owner.key"
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            # Made once by whichever worker comes first; O_EXCL: never two different keys.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(KEY_BYTES))
        text = path.read_text().strip()
        if len(text) < 2 * KEY_BYTES:  # a worker is writing it this very moment
            raise OSError(f"{path} is incomplete")
        return bytes.fromhex(text)

    # -- what the routes use ------------------------------------------------------------------

    async def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: Admission
    ) -> None:
        await self._call(self.db.create, record, items, limits)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._call(self.db.get, job_id)

    async def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        return await self._call(self.db.recent, limit, client)

    async def delete(self, record: JobRecord) -> None:
        await self._call(self._delete, record.id)

    def _delete(self, job_id: str) -> None:
        self._unlink(job_id)
        self.db.delete(job_id)

    def result_path(self, record: JobRecord) -> Path:
        return self.results / f"{record.id}.{record.output}"

    async def result(self, record: JobRecord) -> FileResult | None:
        path = self.result_path(record)
        try:
            size = await self._call(lambda: path.stat().st_size)
        except FileNotFoundError:
            return None
        return FileResult(path, size)

    # -- what the work uses -------------------------------------------------------------------

    async def items(self, job_id: str) -> list[dict[str, Any]]:
        return await self._call(self.db.items, job_id)

    async def done_indexes(self, job_id: str) -> set[int]:
        return await self._call(self._done_indexes, job_id)

    def _done_indexes(self, job_id: str) -> set[int]:
        # Only items whose file is still there count: a deleted folder is drawn again.
        parts = self._parts(job_id)
        return {i for i in self.db.done_indexes(job_id) if (parts / str(i)).is_file()}

    async def start(self, job_id: str, now: float) -> bool:
        return await self._call(self.db.start, job_id, now)

    async def put_item(self, job_id: str, index: int, data: bytes, max_bytes: int) -> int:
        return await self._call(self._put_item, job_id, index, data, max_bytes)

    def _put_item(self, job_id: str, index: int, data: bytes, max_bytes: int) -> int:
        parts = self._parts(job_id)
        for attempt in range(2):
            try:
                parts.mkdir(parents=True, exist_ok=True)
                # Whole or not at all: a crash never leaves half an item.
                tmp = parts / f"{index}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, parts / str(index))
                break
            except FileNotFoundError:
                # The folder went away meanwhile: the job ended (its files go with it), or
                # the folder was deleted (made again once).
                record = self.db.get(job_id)
                if record is None or not record.active:
                    return ENDED
                if attempt:
                    raise JobFailed("the report's files were deleted while it ran") from None
        count = self.db.put_item(job_id, index, len(data), max_bytes, time.time())
        if count == ENDED:
            shutil.rmtree(parts, ignore_errors=True)  # ended meanwhile: nothing of it stays
        return count

    async def end(
        self, job_id: str, state: JobState, now: float, ttl: float, error: str | None = None
    ) -> bool:
        return await self._call(self._end, job_id, state, now, now + ttl, error)

    def _end(
        self, job_id: str, state: JobState, now: float, expires: float, error: str | None
    ) -> bool:
        ended = self.db.end(job_id, state, now, expires, error)
        if ended:
            self._unlink(job_id)
        return ended

    @contextlib.asynccontextmanager
    async def assembly(self, record: JobRecord) -> AsyncIterator[LocalAssembly]:
        parts = self._parts(record.id)
        files = [parts / str(i) for i in range(record.total)]
        missing = await self._call(lambda: [i for i, f in enumerate(files) if not f.is_file()])
        if missing:
            raise JobFailed(
                f"item {missing[0] + 1} was removed before the result was built (its file was "
                "deleted); submit the report again"
            )
        out = self.results / f"{record.id}.{record.output}.building-{secrets.token_hex(4)}"
        try:
            yield LocalAssembly(files, out)
        finally:
            await self._call(_unlink_quietly, out)

    async def put_result(self, record: JobRecord, path: Path, cap: int, ttl: float) -> str:
        # The results' budget was reserved when the job was admitted (a file of at most
        # job_max_output_bytes): nothing to count here.
        kept = self.results / f"{record.id}.{record.output}.kept-{secrets.token_hex(4)}"
        await self._call(os.replace, path, kept)
        return kept.name

    async def complete(
        self, record: JobRecord, handle: str, size: int, now: float, ttl: float
    ) -> bool:
        return await self._call(self._complete, record, handle, size, now, now + ttl)

    def _complete(
        self, record: JobRecord, handle: str, size: int, now: float, expires: float
    ) -> bool:
        final = self.result_path(record)
        try:
            os.replace(self.results / handle, final)
        except FileNotFoundError:
            return False  # removed meanwhile: by a cancel, or with the whole folder
        if not self.db.complete(record.id, now, expires, size):
            _unlink_quietly(final)  # cancelled at the last moment
            return False
        shutil.rmtree(self._parts(record.id), ignore_errors=True)
        return True

    async def expire(self, now: float) -> list[str]:
        return await self._call(self._expire, now)

    def _expire(self, now: float) -> list[str]:
        gone = []
        for record in self.db.expired(now):
            self._delete(record.id)
            gone.append(record.id)
        return gone

    # -- the embedded lane's claims -----------------------------------------------------------

    async def claim(self, owner: str, now: float) -> JobRecord | None:
        return await self._call(self.db.claim, owner, now)

    async def heartbeat(self, owner: str, job_ids: list[str], now: float) -> set[str]:
        return await self._call(self.db.heartbeat, owner, job_ids, now)

    async def requeue(self, job_id: str, owner: str) -> bool:
        return await self._call(self.db.requeue, job_id, owner)

    async def owners(self) -> list[str]:
        return await self._call(self.db.owners)

    async def take_back(
        self, before: float, dead: list[str], now: float, ttl: float, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        return await self._call(self._take_back, before, dead, now, ttl, max_attempts)

    def _take_back(
        self, before: float, dead: list[str], now: float, ttl: float, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        requeued, failed = self.db.take_back(before, dead, now, now + ttl, max_attempts)
        for job_id in failed:
            self._unlink(job_id)
        return requeued, failed

    # -- files --------------------------------------------------------------------------------

    def _parts(self, job_id: str) -> Path:
        return self.results / f"{job_id}.parts"

    def _unlink(self, job_id: str) -> None:
        """Every file of a job: its items, its result, and any result being built."""
        shutil.rmtree(self._parts(job_id), ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            for path in self.results.glob(f"{job_id}.*"):
                _unlink_quietly(path)

    def _remove_leftovers(self) -> None:
        """Files of jobs that no longer exist, or that no job can use any more."""
        jobs = self.db.all_ids()
        for path in self.results.iterdir():
            job_id = path.name.split(".", 1)[0]
            record = jobs.get(job_id) if is_job_id(job_id) else None
            keep = record is not None and (
                # an active job's files: it may be resumed, or running in another worker
                record.active
                or (record.state is JobState.DONE and path == self.result_path(record))
            )
            if not keep:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    _unlink_quietly(path)
                log.info("removed leftover job file %s", path.name)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
