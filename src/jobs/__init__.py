"""Background jobs: many figures rendered into one PDF or ZIP while the site stays fast.

``store`` keeps jobs where every worker sees them; ``runner`` claims and renders them. Nothing
here knows about HTTP: the routes live in ``src/web/jobs.py``.
"""

from .runner import OUTPUTS, JobFailed, JobRunner, is_job_id, jobs_dir, new_job_id, render_job
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
