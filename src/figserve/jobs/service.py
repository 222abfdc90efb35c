"""What the job routes need of a job service, whichever runs the jobs.

Two implementations: ``JobRunner`` (embedded: SQLite, a results folder, render threads of the
serving workers) and ``QueuedJobs`` (scale-out: Redis, SAQ, job workers anywhere). The routes in
``figserve/web/jobs.py`` see only this protocol, and a result only as a ``ResultStream``: its
size and its bytes in windows, streamed to the client, never loaded whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import Settings
from .store import JobRecord

FILE_CHUNK = 256 * 1024


class JobsUnavailable(RuntimeError):
    """The job store did not answer (scale-out mode: Redis); try again shortly."""


class ResultStream(Protocol):
    """A finished job's result."""

    @property
    def size(self) -> int: ...

    def chunks(self, begin: int, end: int) -> AsyncIterator[bytes]:
        """The bytes from ``begin`` to ``end`` (exclusive), a window at a time."""
        ...


class JobService(Protocol):
    settings: Settings
    clock: Callable[[], float]

    @property
    def ready(self) -> bool:
        """Takes submissions and answers for jobs (started, not stopping)."""
        ...

    async def create(
        self,
        output: str,
        items: list[dict[str, Any]],
        client: str | None = None,
        bucket: str | None = None,
    ) -> JobRecord:
        """Queue a job of validated items for ``client``, counted against ``bucket``'s share;
        raises ``TooManyJobs``, ``TooManyClientJobs`` or ``ResultsFull`` past the limits."""
        ...

    async def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job; with ``client``, only if that client made it."""
        ...

    async def recent(self, limit: int = 50, client: str | None = None) -> list[JobRecord]: ...

    async def cancel(self, job_id: str) -> JobRecord | None:
        """Stop a queued or running job; return it as it is afterwards."""
        ...

    async def remove(self, job_id: str) -> None:
        """Delete an ended job and its result now instead of at expiry."""
        ...

    async def result(self, record: JobRecord) -> ResultStream | None:
        """The result of a done job, or None once it is gone."""
        ...


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
