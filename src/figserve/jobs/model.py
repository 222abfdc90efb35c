"""What a job is, whichever store keeps it: its record, its states, the limits a new one must
fit, and the ways it can be refused or stopped.

Times are wall-clock seconds (``time.time()``): they are compared across processes and machines.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from enum import StrEnum

from ..config import Settings

ID_BYTES = 16  # ids are 32 hex digits: unguessable, so a job URL is only known to who got it
OUTPUTS = {"pdf": "application/pdf", "zip": "application/zip"}


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
    """The byte budget of results has no room for one more job."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class JobsUnavailable(RuntimeError):
    """The job store did not answer in time, or cannot be used now (locked, damaged, down);
    the message says which. Try again after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 2.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreFull(RuntimeError):
    """The store refused to keep more bytes (Redis at ``maxmemory``); the message says so."""


class JobFailed(Exception):
    """A job cannot go on; the message is shown to its owner."""


@dataclass(frozen=True)
class Admission:
    """The limits a new job must fit, checked atomically with its creation."""

    max_active: int
    # Active jobs per client: those of the new job's bucket or client; None: no such limit.
    max_bucket_active: int | None = None
    # Bytes that finished results plus ``reserve_bytes`` per active job (and the new one) may
    # hold; None: no budget.
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
    owner: str | None = None  # the runner that claimed it (embedded mode)
    error: str | None = None
    result_bytes: int | None = None
    expires: float | None = None  # set when the job ends: then it and its result are removed
    attempts: int = 0  # times a runner claimed it; an orderly stop gives its attempt back
    # Who may see and act on the job: a hash of the owner token of the client that made it.
    client: str | None = None
    # What the per-client limit counts: the client, or a shared bucket for clients without one.
    bucket: str | None = None
    # A PDF's paper: "a4", "letter", or "figure" (each page its figure's size; also None, as
    # jobs of earlier releases have it).
    paper: str | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def new_job_id() -> str:
    return secrets.token_hex(ID_BYTES)


def is_job_id(text: str) -> bool:
    return len(text) == 2 * ID_BYTES and all(c in "0123456789abcdef" for c in text)


def new_job(
    settings: Settings,
    output: str,
    total: int,
    now: float,
    client: str | None,
    bucket: str | None,
    paper: str | None = None,
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
        paper=paper,
    )
    limits = Admission(
        max_active=settings.job_max_active,
        max_bucket_active=settings.job_max_client_active,
        results_quota_bytes=settings.job_results_quota_bytes,
        reserve_bytes=settings.job_max_output_bytes,
    )
    return record, limits


def gave_up(what: str, attempts: int) -> str:
    """The error of a job whose worker stopped responding ``attempts`` times."""
    return f"{what}: its worker stopped responding {attempts} times"
