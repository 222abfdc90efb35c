"""Where jobs live: the store protocol that the job engine (``engine.py``) works against.

Two implementations keep the same promises: ``LocalJobStore`` (embedded mode: one SQLite file
and a results folder that every worker of one server shares) and ``RedisJobStore`` (scale-out
mode: one Redis that every instance and job worker shares). The contract tests run the same
checks on both.

The promises:

- ``create`` counts the limits and adds the job in one atomic step.
- Every change that belongs to the work of a job (an item kept, the job started, ended or
  completed) is conditional on the job still being active, so a cancel (or a failure) always
  wins over a late item or a late result, and nothing ends twice.
- Items are kept by index, as a set: a task delivered twice keeps its item once.
- A result becomes visible only with the job's state ``done``, in the same step.
- A store that cannot answer (locked, damaged, down, too slow) raises ``JobsUnavailable``; one
  that refuses bytes for lack of memory raises ``StoreFull``; neither loses what it holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from .model import Admission, JobRecord, JobState

# put_item's answers besides the number of items kept
ENDED = -1  # the job is no longer active: drop the item
TOO_LARGE = -2  # the job's items passed their byte limit


class ResultStream(Protocol):
    """A finished job's result: its size, and its bytes read in windows, never loaded whole."""

    @property
    def size(self) -> int: ...

    def chunks(self, begin: int, end: int) -> AsyncIterator[bytes]:
        """The bytes from ``begin`` to ``end`` (exclusive), a window at a time."""
        ...


class Assembly(Protocol):
    """Where a job's result is built: its items as local files, and a file to write."""

    parts: list[Path]
    out: Path


class JobStore(Protocol):
    async def open(self) -> None:
        """Make the store usable (create what is missing); raises if it cannot be."""

    async def close(self) -> None: ...

    async def check(self) -> None:
        """Raise ``JobsUnavailable`` unless the store answers now (readiness)."""

    async def owner_key(self) -> bytes:
        """The secret that signs owner tokens, the same for every process of this store:
        made once, then kept."""

    # -- what the routes use ------------------------------------------------------------------

    async def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: Admission
    ) -> None:
        """Add a queued job, or raise ``TooManyJobs`` (``TooManyClientJobs`` for its bucket) or
        ``ResultsFull`` when it does not fit ``limits``."""

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        """The newest jobs first; with ``client``, only that client's."""

    async def delete(self, record: JobRecord) -> None:
        """Remove a job, its items and its result now."""

    async def result(self, record: JobRecord) -> ResultStream | None:
        """The result of a done job, or None once it is gone."""

    # -- what the work uses -------------------------------------------------------------------

    async def items(self, job_id: str) -> list[dict[str, Any]]:
        """The job's items as stored (validated when queued)."""

    async def done_indexes(self, job_id: str) -> set[int]: ...

    async def start(self, job_id: str, now: float) -> bool:
        """A queued job becomes running; False if it was not queued."""

    async def put_item(self, job_id: str, index: int, data: bytes, max_bytes: int) -> int:
        """Keep an item's bytes if the job is active: the number of items kept, ``ENDED`` if
        it is not active, ``TOO_LARGE`` once its items pass ``max_bytes`` in all."""

    async def end(
        self, job_id: str, state: JobState, now: float, ttl: float, error: str | None = None
    ) -> bool:
        """End an active job failed or cancelled, dropping its items; False if it had ended."""

    def assembly(self, record: JobRecord) -> AbstractAsyncContextManager[Assembly]:
        """The job's items as files and a place to build its result; cleaned up on leaving.
        Raises ``JobFailed`` if an item is missing."""

    async def put_result(self, record: JobRecord, path: Path, cap: int, ttl: float) -> str:
        """Keep a built result, not visible yet; returns a handle for ``complete``. Raises
        ``ResultsFull`` when the results' budget ``cap`` has no room for it."""

    async def complete(
        self, record: JobRecord, handle: str, size: int, now: float, ttl: float
    ) -> bool:
        """End the job done with the kept result, if it is still active (else drop the
        result and return False)."""

    async def expire(self, now: float) -> list[str]:
        """Remove ended jobs whose time is up; their ids."""
