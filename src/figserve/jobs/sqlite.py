"""The job database of embedded mode: one SQLite file in WAL mode that every worker of a server
opens, so they share jobs without a server of their own (``sqlite_file.py`` keeps the file
usable). Synchronous and short: ``LocalJobStore`` calls it from one thread of its own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .model import (
    ACTIVE,
    Admission,
    JobRecord,
    JobState,
    ResultsFull,
    TooManyClientJobs,
    TooManyJobs,
)
from .sqlite_file import SQLiteFile
from .sqlite_schema import COLUMNS, prepare
from .store import ENDED, TOO_LARGE

T = TypeVar("T")


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = list(row)
    values[1] = JobState(values[1])
    return JobRecord(*values)


class JobsDatabase:
    """The jobs' SQL, over one ``SQLiteFile``."""

    def __init__(self, path: Path, busy_timeout: float = 1.5) -> None:
        self.file = SQLiteFile(path, prepare, busy_timeout)
        self.path = path

    def close(self) -> None:
        self.file.close()

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.file.run(fn)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.file.transaction(fn)

    def check(self) -> None:
        """Raise ``JobsUnavailable`` unless the jobs can be read and written now (the write
        lock is taken and given back at once: another process holding it shows here)."""

        def check(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT COUNT(*) FROM jobs").fetchone()

        self._transaction(check)

    # -- jobs ---------------------------------------------------------------------------------

    def create(self, record: JobRecord, items: list[dict[str, Any]], limits: Admission) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            _admit(conn, record, limits)
            conn.execute(
                f"INSERT INTO jobs ({COLUMNS}, items) VALUES ({', '.join('?' * 18)})",
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
                    record.paper,
                    json.dumps(items, separators=(",", ":")),
                ),
            )

        self._transaction(insert)

    def get(self, job_id: str) -> JobRecord | None:
        row = self._one(f"SELECT {COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _record(row) if row else None

    def recent(self, limit: int, client: str | None = None) -> list[JobRecord]:
        if client is None:
            sql = f"SELECT {COLUMNS} FROM jobs ORDER BY created DESC, rowid DESC LIMIT ?"
            args: tuple[Any, ...] = (limit,)
        else:
            sql = (
                f"SELECT {COLUMNS} FROM jobs WHERE client = ? "
                "ORDER BY created DESC, rowid DESC LIMIT ?"
            )
            args = (client, limit)
        return [_record(row) for row in self._all(sql, args)]

    def items(self, job_id: str) -> list[dict[str, Any]]:
        row = self._one("SELECT items FROM jobs WHERE id = ?", (job_id,))
        return json.loads(row[0]) if row else []

    def done_indexes(self, job_id: str) -> set[int]:
        return {r[0] for r in self._all("SELECT idx FROM job_items WHERE job = ?", (job_id,))}

    def start(self, job_id: str, now: float) -> bool:
        return self._write(
            "UPDATE jobs SET state = ?, started = COALESCE(started, ?) WHERE id = ? AND state = ?",
            (JobState.RUNNING, now, job_id, JobState.QUEUED),
        )

    def put_item(self, job_id: str, index: int, size: int, max_bytes: int, now: float) -> int:
        def put(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row[0] not in ACTIVE:
                return ENDED
            conn.execute(
                "INSERT OR IGNORE INTO job_items (job, idx, bytes) VALUES (?, ?, ?)",
                (job_id, index, size),
            )
            count, total = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM job_items WHERE job = ?",
                (job_id,),
            ).fetchone()
            if total > max_bytes:
                return TOO_LARGE
            conn.execute(
                "UPDATE jobs SET done = ?, heartbeat = ? WHERE id = ?", (count, now, job_id)
            )
            return int(count)

        return self._transaction(put)

    def end(
        self, job_id: str, state: JobState, now: float, expires: float, error: str | None
    ) -> bool:
        def end(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE jobs SET state = ?, finished = ?, expires = ?, error = ? "
                "WHERE id = ? AND state IN (?, ?)",
                (state, now, expires, error, job_id, *ACTIVE),
            ).rowcount
            conn.execute("DELETE FROM job_items WHERE job = ?", (job_id,))
            return changed == 1

        return self._transaction(end)

    def complete(self, job_id: str, now: float, expires: float, size: int) -> bool:
        def complete(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE jobs SET state = ?, finished = ?, expires = ?, result_bytes = ?, "
                "done = total WHERE id = ? AND state IN (?, ?)",
                (JobState.DONE, now, expires, size, job_id, *ACTIVE),
            ).rowcount
            conn.execute("DELETE FROM job_items WHERE job = ?", (job_id,))
            return changed == 1

        return self._transaction(complete)

    def expired(self, now: float) -> list[JobRecord]:
        rows = self._all(
            f"SELECT {COLUMNS} FROM jobs WHERE expires IS NOT NULL AND expires <= ?", (now,)
        )
        return [_record(row) for row in rows]

    def delete(self, job_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            conn.execute("DELETE FROM job_items WHERE job = ?", (job_id,))

        self._transaction(delete)

    # -- the embedded lane's claims -----------------------------------------------------------

    def claim(self, owner: str, now: float) -> JobRecord | None:
        """Mark the oldest queued job running for ``owner`` and count the attempt. Its items
        kept so far are kept: a job given back resumes where it stopped."""
        row = self._one(
            "UPDATE jobs SET state = ?, owner = ?, started = COALESCE(started, ?), "
            "heartbeat = ?, attempts = attempts + 1 "
            "WHERE id = (SELECT id FROM jobs WHERE state = ? ORDER BY created, rowid LIMIT 1) "
            f"AND state = ? RETURNING {COLUMNS}",
            (JobState.RUNNING, owner, now, now, JobState.QUEUED, JobState.QUEUED),
        )
        return _record(row) if row else None

    def heartbeat(self, owner: str, job_ids: list[str], now: float) -> set[str]:
        """Show that ``owner`` is alive for the jobs it runs; the ids it still holds."""
        if not job_ids:
            return set()
        rows = self._all(
            "UPDATE jobs SET heartbeat = ? WHERE owner = ? AND state = ? "
            "AND id IN (SELECT value FROM json_each(?)) RETURNING id",
            (now, owner, JobState.RUNNING, json.dumps(job_ids)),
        )
        return {row[0] for row in rows}

    def requeue(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue (its runner stops in an orderly way, so the
        attempt does not count)."""
        return self._write(
            "UPDATE jobs SET state = ?, owner = NULL, heartbeat = NULL, "
            "attempts = MAX(attempts - 1, 0) WHERE id = ? AND owner = ? AND state = ?",
            (JobState.QUEUED, job_id, owner, JobState.RUNNING),
        )

    def take_back(
        self, before: float, dead_owners: list[str], now: float, expires: float, max_attempts: int
    ) -> tuple[list[str], list[str]]:
        """Jobs whose runner died (heartbeat older than ``before``, or owner in
        ``dead_owners``) go back to the queue with their items, or fail once they were
        claimed ``max_attempts`` times. Returns (requeued ids, failed ids)."""
        lost = "(heartbeat < ? OR owner IN (SELECT value FROM json_each(?)))"
        args = (before, json.dumps(dead_owners))
        error = f"the job was interrupted {max_attempts} times: its worker stopped responding"

        def take_back(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
            failed = conn.execute(
                "UPDATE jobs SET state = ?, finished = ?, expires = ?, error = ? "
                f"WHERE state = ? AND attempts >= ? AND {lost} RETURNING id",
                (JobState.FAILED, now, expires, error, JobState.RUNNING, max_attempts, *args),
            ).fetchall()
            for (job_id,) in failed:
                conn.execute("DELETE FROM job_items WHERE job = ?", (job_id,))
            requeued = conn.execute(
                "UPDATE jobs SET state = ?, owner = NULL, heartbeat = NULL "
                f"WHERE state = ? AND {lost} RETURNING id",
                (JobState.QUEUED, JobState.RUNNING, *args),
            ).fetchall()
            return [row[0] for row in requeued], [row[0] for row in failed]

        return self._transaction(take_back)

    def owners(self) -> list[str]:
        """The runners of every running job."""
        rows = self._all(
            "SELECT DISTINCT owner FROM jobs WHERE state = ? AND owner IS NOT NULL",
            (JobState.RUNNING,),
        )
        return [row[0] for row in rows]

    def all_ids(self) -> dict[str, JobRecord]:
        return {r.id: r for r in map(_record, self._all(f"SELECT {COLUMNS} FROM jobs"))}

    # -- helpers ------------------------------------------------------------------------------

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        return self.run(lambda conn: conn.execute(sql, args).fetchone())

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.run(lambda conn: conn.execute(sql, args).fetchall())

    def _write(self, sql: str, args: tuple[Any, ...]) -> bool:
        """A conditional update of one job; False if its condition no longer held."""
        return self.run(lambda conn: conn.execute(sql, args).rowcount) == 1


def _admit(conn: sqlite3.Connection, record: JobRecord, limits: Admission) -> None:
    """Raise unless ``record`` fits ``limits``; runs inside the transaction of ``create``."""
    (active,) = conn.execute("SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)", ACTIVE).fetchone()
    if active >= limits.max_active:
        raise TooManyJobs(f"{active} jobs are already queued or running")
    if limits.max_bucket_active is not None and record.bucket is not None:
        # The client's jobs: those counted in its bucket, and those it owns (its first job may
        # have been made before it had a token, in a shared bucket).
        (mine,) = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE (bucket = ? OR client = ?) AND state IN (?, ?)",
            (record.bucket, record.client, *ACTIVE),
        ).fetchone()
        if mine >= limits.max_bucket_active:
            raise TooManyClientJobs(f"you have {mine} jobs queued or running")
    if limits.results_quota_bytes is not None:
        stored, next_expiry = conn.execute(
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
