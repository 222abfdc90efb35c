"""Where jobs live: one store that every worker of a server reads and writes.

``JobStore`` is the interface the runner and the routes use; ``SQLiteJobStore`` implements it on
one SQLite file in WAL mode, so the workers of one machine share jobs without an extra server.
A store for several machines (Redis, a SQL server) implements the same methods with the same
guarantees: ``create`` and ``claim`` are atomic, and every update that belongs to a runner is
conditional on the job still being running and owned by that runner, so a cancel or a reap by
another worker always wins over a late update.

Times are wall-clock seconds (``time.time()``): they are compared across processes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class TooManyJobs(RuntimeError):
    """The limit of queued plus running jobs is reached."""


class TooManyClientJobs(TooManyJobs):
    """The client that submits already has its share of queued plus running jobs."""


class ResultsFull(RuntimeError):
    """The disk budget of results has no room for one more job."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Admission:
    """The limits a new job must fit, checked atomically with its creation."""

    max_active: int
    # Active jobs per client: those of the new job's bucket or client; None: no such limit.
    max_bucket_active: int | None = None
    # Bytes that finished results plus ``reserve_bytes`` per active job (and the new one) may
    # hold; None: no disk budget.
    results_quota_bytes: int | None = None
    reserve_bytes: int = 0


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: JobState
    output: str  # "pdf" or "zip"
    total: int
    done: int
    created: float
    started: float | None = None
    finished: float | None = None
    heartbeat: float | None = None
    owner: str | None = None  # the runner that claimed it
    error: str | None = None
    result_bytes: int | None = None
    expires: float | None = None  # set when the job ends: then it and its result are removed
    attempts: int = 0  # times a runner claimed it; an orderly stop gives its attempt back
    # Who may see and act on the job: a hash of the owner token of the client that made it.
    client: str | None = None
    # What the per-client limit counts: the client, or a shared bucket for clients without one.
    bucket: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


class JobStore(Protocol):
    def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: int | Admission
    ) -> None:
        """Add a queued job, or raise ``TooManyJobs`` (too many active jobs, in all or of its
        bucket) or ``ResultsFull`` when it does not fit ``limits`` (an int: ``max_active``)."""

    def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        """The job; with ``client``, only if it belongs to that client."""

    def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        """The newest jobs first; with ``client``, only that client's."""

    def items(self, job_id: str) -> list[dict[str, Any]]: ...

    def claim(self, owner: str, now: float) -> JobRecord | None:
        """Mark the oldest queued job running for ``owner``, count the attempt, and return it
        (None if none). ``done`` is kept: a job given back resumes where it stopped."""

    def progress(self, job_id: str, owner: str, done: int, now: float) -> bool:
        """Record progress; False if the job is no longer running for ``owner`` (cancelled)."""

    def heartbeat(self, owner: str, now: float) -> None:
        """Show that ``owner`` is alive for all the jobs it runs."""

    def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        now: float,
        expires: float,
        error: str | None = None,
        result_bytes: int | None = None,
    ) -> bool:
        """End a job ``owner`` runs; False if it was cancelled or reaped meanwhile."""

    def requeue(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue with its progress (its runner is stopping in an
        orderly way, so the attempt does not count)."""

    def cancel(self, job_id: str, now: float, expires: float) -> JobRecord | None:
        """Cancel a queued or running job; return the job as it is afterwards."""

    def take_back(
        self, before: float, dead_owners: list[str], now: float, expires: float, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        """Jobs whose runner died (heartbeat older than ``before``, or owner in
        ``dead_owners``) go back to the queue with their progress, or fail once they were
        claimed ``max_attempts`` times. Returns (requeued ids, failed ids)."""

    def running(self) -> list[JobRecord]:
        """Every running job, any owner's."""

    def expired(self, now: float) -> list[JobRecord]:
        """Ended jobs whose ``expires`` has passed."""

    def delete(self, job_id: str) -> None: ...

    def close(self) -> None: ...


_COLUMNS = (
    "id, state, output, total, done, created, started, finished, heartbeat, owner, error, "
    "result_bytes, expires, attempts, client, bucket"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    output TEXT NOT NULL,
    total INTEGER NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    owner TEXT,
    error TEXT,
    result_bytes INTEGER,
    expires REAL,
    items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created);
"""
# Columns added after the first release: added to an existing database when it is opened.
_ADDED_COLUMNS = {"attempts": "INTEGER NOT NULL DEFAULT 0", "client": "TEXT", "bucket": "TEXT"}
_ADDED_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_client_created ON jobs (client, created);
CREATE INDEX IF NOT EXISTS jobs_bucket_state ON jobs (bucket, state);
"""


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = list(row)
    values[1] = JobState(values[1])
    return JobRecord(*values)


class SQLiteJobStore:
    """All workers open the same file; WAL lets readers go on while one of them writes."""

    def __init__(self, path: Path, busy_timeout: float = 10.0) -> None:
        self.path = path
        # One connection per store, used under a lock: calls are short and come from one thread.
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        # Workers start together and all open the file; switching a new database to WAL fails
        # at once with "locked" (no busy wait) while another worker does it, so retry briefly.
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                with self._lock:
                    self._conn.execute("PRAGMA journal_mode=WAL")
                    # In WAL mode NORMAL loses at most the last commits on power loss, never
                    # consistency.
                    self._conn.execute("PRAGMA synchronous=NORMAL")
                    self._conn.executescript(_SCHEMA)
                    self._add_columns()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._conn.close()
                    raise
                time.sleep(0.02)

    def _add_columns(self) -> None:
        # Under the write lock, so two workers opening an older file do not both add a column.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)")}
            for name, kind in _ADDED_COLUMNS.items():
                if name not in have:
                    self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
            for statement in _ADDED_INDEXES.strip().splitlines():
                self._conn.execute(statement)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def _write_one(self, sql: str, args: tuple[Any, ...]) -> bool:
        """Run a conditional update of one job; False if its condition no longer held."""
        return self._write(sql, args) == 1

    def create(
        self, record: JobRecord, items: list[dict[str, Any]], limits: int | Admission
    ) -> None:
        if isinstance(limits, int):
            limits = Admission(max_active=limits)
        with self._lock:
            # IMMEDIATE takes the write lock first, so two workers cannot both pass the count.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._admit(record, limits)
                self._conn.execute(
                    f"INSERT INTO jobs ({_COLUMNS}, items) VALUES ({', '.join('?' * 17)})",
                    (
                        record.id,
                        record.state.value,
                        record.output,
                        record.total,
                        record.done,
                        record.created,
                        record.started,
                        record.finished,
                        record.heartbeat,
                        record.owner,
                        record.error,
                        record.result_bytes,
                        record.expires,
                        record.attempts,
                        record.client,
                        record.bucket,
                        json.dumps(items, separators=(",", ":")),
                    ),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _admit(self, record: JobRecord, limits: Admission) -> None:
        """Raise unless ``record`` fits ``limits``; runs inside the transaction of ``create``."""
        (active,) = self._conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", ACTIVE
        ).fetchone()
        if active >= limits.max_active:
            raise TooManyJobs(f"{active} jobs are already queued or running")
        if limits.max_bucket_active is not None and record.bucket is not None:
            # The client's jobs: those counted in its bucket, and those it owns (its first job
            # may have been made before it had a token, in a shared bucket).
            (mine,) = self._conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE (bucket = ? OR client = ?) AND state IN (?, ?)",
                (record.bucket, record.client, *ACTIVE),
            ).fetchone()
            if mine >= limits.max_bucket_active:
                raise TooManyClientJobs(f"you have {mine} jobs queued or running")
        if limits.results_quota_bytes is not None:
            stored, next_expiry = self._conn.execute(
                "SELECT COALESCE(SUM(result_bytes), 0), MIN(expires) FROM jobs WHERE state = ?",
                (JobState.DONE,),
            ).fetchone()
            needed = stored + (active + 1) * limits.reserve_bytes
            if needed > limits.results_quota_bytes:
                # Room comes back when the next result expires (or a running job ends).
                wait = (next_expiry - record.created) if next_expiry is not None else 0
                raise ResultsFull(
                    f"job results use {stored:,} of {limits.results_quota_bytes:,} bytes and "
                    f"{active} jobs may still write up to {limits.reserve_bytes:,} each",
                    retry_after=max(1.0, wait),
                )

    def get(self, job_id: str, client: str | None = None) -> JobRecord | None:
        if client is None:
            row = self._one(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        else:
            row = self._one(
                f"SELECT {_COLUMNS} FROM jobs WHERE id = ? AND client = ?", (job_id, client)
            )
        return _record(row) if row else None

    def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        if client is None:
            rows = self._all(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY created DESC, rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = self._all(
                f"SELECT {_COLUMNS} FROM jobs WHERE client = ? "
                "ORDER BY created DESC, rowid DESC LIMIT ?",
                (client, limit),
            )
        return [_record(row) for row in rows]

    def items(self, job_id: str) -> list[dict[str, Any]]:
        row = self._one("SELECT items FROM jobs WHERE id = ?", (job_id,))
        return json.loads(row[0]) if row else []

    def claim(self, owner: str, now: float) -> JobRecord | None:
        row = self._one(
            "UPDATE jobs SET state = ?, owner = ?, started = COALESCE(started, ?), "
            "heartbeat = ?, attempts = attempts + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE state = ? ORDER BY created, rowid LIMIT 1) "
            f"AND state = ? RETURNING {_COLUMNS}",
            (JobState.RUNNING, owner, now, now, JobState.QUEUED, JobState.QUEUED),
        )
        return _record(row) if row else None

    def progress(self, job_id: str, owner: str, done: int, now: float) -> bool:
        return self._write_one(
            "UPDATE jobs SET done = ?, heartbeat = ? WHERE id = ? AND owner = ? AND state = ?",
            (done, now, job_id, owner, JobState.RUNNING),
        )

    def heartbeat(self, owner: str, now: float) -> None:
        self._write(
            "UPDATE jobs SET heartbeat = ? WHERE owner = ? AND state = ?",
            (now, owner, JobState.RUNNING),
        )

    def finish(
        self,
        job_id: str,
        owner: str,
        state: JobState,
        now: float,
        expires: float,
        error: str | None = None,
        result_bytes: int | None = None,
    ) -> bool:
        return self._write_one(
            "UPDATE jobs SET state = ?, finished = ?, expires = ?, error = ?, result_bytes = ? "
            "WHERE id = ? AND owner = ? AND state = ?",
            (state, now, expires, error, result_bytes, job_id, owner, JobState.RUNNING),
        )

    def requeue(self, job_id: str, owner: str) -> bool:
        return self._write_one(
            "UPDATE jobs SET state = ?, owner = NULL, heartbeat = NULL, "
            "attempts = MAX(attempts - 1, 0) WHERE id = ? AND owner = ? AND state = ?",
            (JobState.QUEUED, job_id, owner, JobState.RUNNING),
        )

    def cancel(self, job_id: str, now: float, expires: float) -> JobRecord | None:
        self._write(
            "UPDATE jobs SET state = ?, finished = ?, expires = ? WHERE id = ? AND state IN (?, ?)",
            (JobState.CANCELLED, now, expires, job_id, *ACTIVE),
        )
        return self.get(job_id)

    def take_back(
        self, before: float, dead_owners: list[str], now: float, expires: float, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        lost = "(heartbeat < ? OR owner IN (SELECT value FROM json_each(?)))"
        args = (before, json.dumps(dead_owners))
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                failed = self._conn.execute(
                    "UPDATE jobs SET state = ?, finished = ?, expires = ?, error = ? "
                    f"WHERE state = ? AND attempts >= ? AND {lost} RETURNING id",
                    (
                        JobState.FAILED,
                        now,
                        expires,
                        f"the job was interrupted {max_attempts} times: its worker stopped "
                        "responding each time",
                        JobState.RUNNING,
                        max_attempts,
                        *args,
                    ),
                ).fetchall()
                requeued = self._conn.execute(
                    "UPDATE jobs SET state = ?, owner = NULL, heartbeat = NULL "
                    f"WHERE state = ? AND {lost} RETURNING id",
                    (JobState.QUEUED, JobState.RUNNING, *args),
                ).fetchall()
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return [row[0] for row in requeued], [row[0] for row in failed]

    def running(self) -> list[JobRecord]:
        rows = self._all(f"SELECT {_COLUMNS} FROM jobs WHERE state = ?", (JobState.RUNNING,))
        return [_record(row) for row in rows]

    def expired(self, now: float) -> list[JobRecord]:
        rows = self._all(
            f"SELECT {_COLUMNS} FROM jobs WHERE expires IS NOT NULL AND expires <= ?", (now,)
        )
        return [_record(row) for row in rows]

    def delete(self, job_id: str) -> None:
        self._write("DELETE FROM jobs WHERE id = ?", (job_id,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()
