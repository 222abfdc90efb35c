"""Background jobs: many figures rendered into one PDF or ZIP while the site stays fast.

``store`` keeps jobs where every worker sees them; ``runner`` claims and renders them through
the worker's render processes; ``assemble`` builds the result. Nothing here knows about HTTP:
the routes live in ``src/web/jobs.py``.
"""

from .assemble import OUTPUTS, JobFailed, render_job
from .runner import JobRunner, is_job_id, jobs_dir, new_job_id
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
    "JobFailed",
    "JobRecord",
    "JobRunner",
    "JobState",
    "JobStore",
    "ResultsFull",
    "SQLiteJobStore",
    "TooManyClientJobs",
    "TooManyJobs",
    "is_job_id",
    "jobs_dir",
    "new_job_id",
    "render_job",
]
