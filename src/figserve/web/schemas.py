"""The API's own request and response models (beside ``RenderSpec`` and ``JobRequest``): they
validate and serialise for real, and the OpenAPI document is built from them."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field
from quart import url_for

from ..figures.data import PlotParams
from ..jobs import OUTPUTS, JobRecord, JobState
from ..render import Format


class PlotForm(PlotParams):
    """Form fields of an upload; the data itself comes in the file field ``file``."""

    format: Format = "png"
    w: int | None = None
    h: int | None = None
    dpr: float | None = None
    dpi: int | None = None


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class JobOut(BaseModel):
    """A job as the API shows it."""

    id: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    output: Literal["pdf", "zip"]
    done: int = Field(description="Items rendered so far.")
    total: int
    progress: float = Field(description="done / total, 0 to 1.")
    created: str
    started: str | None
    finished: str | None
    expires: str | None = Field(description="When the job and its result are removed.")
    seconds: float | None = Field(description="Running time so far, or in all once ended.")
    error: str | None
    url: str
    result_url: str | None = Field(description="Set once state is done.")
    result_bytes: int | None
    media_type: str

    @classmethod
    def of(cls, job: JobRecord, now: float) -> JobOut:
        end = job.finished if job.finished is not None else now
        done = job.state is JobState.DONE
        return cls(
            id=job.id,
            state=job.state.value,
            output=job.output,
            done=job.done,
            total=job.total,
            progress=round(job.done / job.total, 4) if job.total else 1.0,
            created=_iso(job.created) or "",
            started=_iso(job.started),
            finished=_iso(job.finished),
            expires=_iso(job.expires),
            seconds=round(end - job.started, 3) if job.started is not None else None,
            error=job.error,
            url=url_for("jobs.job", job_id=job.id),
            result_url=url_for("jobs.result", job_id=job.id) if done else None,
            result_bytes=job.result_bytes,
            media_type=OUTPUTS[job.output],
        )


class JobList(BaseModel):
    """The caller's recent jobs, newest first."""

    jobs: list[JobOut]
