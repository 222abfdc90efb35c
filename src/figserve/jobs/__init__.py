"""Background jobs: many figures rendered into one PDF or ZIP while the site stays fast.

One engine over two stores. ``model`` says what a job is, ``plan`` what a job asks for;
``store`` is the protocol of where jobs live, with ``LocalJobStore`` (embedded: SQLite and a
results folder) and ``RedisJobStore`` (scale-out); ``engine`` moves a job (items, assembly,
failure), run by a lane: ``local`` (a runner per serving worker) or ``queue`` (SAQ workers).
``service`` is what the routes use; ``serving`` builds it all from settings. Nothing here knows
about HTTP: the routes live in ``figserve/web/jobs.py``.
"""

from .engine import JobEngine
from .model import (
    ACTIVE,
    OUTPUTS,
    Admission,
    JobFailed,
    JobRecord,
    JobState,
    JobsUnavailable,
    ResultsFull,
    StoreFull,
    TooManyClientJobs,
    TooManyJobs,
    is_job_id,
    new_job_id,
)
from .plan import PAPERS, JobPlan, JobRequest, ReportPart, build_plan, plan_from_json, reject
from .service import JobService
from .serving import jobs_dir, serving_jobs
from .store import JobStore, ResultStream

__all__ = [
    "ACTIVE",
    "OUTPUTS",
    "PAPERS",
    "Admission",
    "JobEngine",
    "JobFailed",
    "JobPlan",
    "JobRecord",
    "JobRequest",
    "JobService",
    "JobState",
    "JobStore",
    "JobsUnavailable",
    "ReportPart",
    "ResultStream",
    "ResultsFull",
    "StoreFull",
    "TooManyClientJobs",
    "TooManyJobs",
    "build_plan",
    "is_job_id",
    "jobs_dir",
    "new_job_id",
    "plan_from_json",
    "reject",
    "serving_jobs",
]
