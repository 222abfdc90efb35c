"""Background jobs: many figures rendered into one PDF or ZIP while the site stays fast.

``store`` keeps jobs where every worker sees them; ``runner`` claims and renders them through
the worker's render processes; ``assemble`` builds the result. Nothing here knows about HTTP:
the routes live in ``figserve/web/jobs.py``.
"""

from .assemble import JobFailed, render_job
from .plan import OUTPUTS, JobPlan, JobRequest, check_cost, plan_from_json, reject
from .runner import JobRunner, is_job_id, jobs_dir, new_job_id
from .service import FileResult, JobService, JobsUnavailable, ResultStream
from .store import (
    ACTIVE,
    Admission,
    JobRecord,
    JobState,
    JobStore,
    ResultsFull,
    SQLiteJobStore,
    TooManyClientJobs,
    TooManyJobs,
)

__all__ = [
    "ACTIVE",
    "OUTPUTS",
    "Admission",
    "FileResult",
    "JobFailed",
    "JobPlan",
    "JobRecord",
    "JobRequest",
    "JobRunner",
    "JobService",
    "JobState",
    "JobStore",
    "JobsUnavailable",
    "ResultStream",
    "ResultsFull",
    "SQLiteJobStore",
    "TooManyClientJobs",
    "TooManyJobs",
    "check_cost",
    "is_job_id",
    "jobs_dir",
    "new_job_id",
    "plan_from_json",
    "reject",
    "render_job",
]
