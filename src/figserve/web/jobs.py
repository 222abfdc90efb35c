"""Job routes: start a batch of figures as one PDF or ZIP, watch it, download it, cancel it.

API clients get JSON; browsers (``Accept: text/html``) get pages with a live progress bar. Every
route reads the shared job store, so any worker answers for any job. Jobs are private: each route
shows and acts on the caller's jobs only (see ``owner.py``); someone else's job answers exactly
as an unknown one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

from quart import Blueprint, Response, redirect, render_template, request, url_for
from quart.wrappers.response import ResponseBody
from quart_schema import document_request, tag
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from ..jobs import (
    OUTPUTS,
    JobRecord,
    JobRequest,
    JobService,
    JobState,
    JobsUnavailable,
    ResultsFull,
    ResultStream,
    TooManyClientJobs,
    TooManyJobs,
    is_job_id,
    plan_from_json,
)
from ..render import MEDIA_TYPES
from .body import is_json, json_object, unsupported_media_type
from .errors import Problem, problem_response, wants_html
from .forms import report_from_form
from .openapi import BODY_ERRORS, HTML, json_of, problem, responds
from .owner import Caller, bucket, caller, new_token, set_owner_cookie
from .params import no_query
from .schemas import JobList, JobOut
from .state import app_state

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
tag_names = ["jobs"]
RECENT = 50
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_JOB = json_of(JobOut.model_json_schema())
# Any job route: no query string is taken, and a wrong operator token is refused.
_COMMON = {
    "400": problem("A query string, or invalid items: each error names its parameter."),
    "401": problem("An Authorization header without the operator's token."),
}


def job_runner() -> JobService:
    runner = app_state().jobs
    if runner is None or not runner.ready:
        raise Problem(503, "Not ready", "Jobs are not running.", headers={"Retry-After": "1"})
    return runner


async def job_or_404(runner: JobService, job_id: str, who: Caller) -> JobRecord:
    """The caller's job; any other (someone else's, unknown, malformed) is the same 404."""
    job = None
    if is_job_id(job_id) and (who.admin or who.client is not None):
        job = await runner.get(job_id, None if who.admin else who.client)
    if job is None:
        minutes = runner.settings.job_result_ttl / 60
        raise Problem(
            404,
            "Unknown job",
            f"There is no job {job_id[:40]!r}. Ended jobs and their results are removed "
            f"{minutes:g} minutes after they end.",
        )
    return job


def _shown(runner: JobService, job: JobRecord) -> JobOut:
    return JobOut.of(job, runner.clock())


def _json(model: JobOut | JobList, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status=status, mimetype="application/json")


@bp.before_request
async def _no_query_string() -> None:
    # No job route takes a query: anything there is a mistake, so say so.
    no_query()


@bp.errorhandler(JobsUnavailable)
async def _unavailable(exc: JobsUnavailable) -> Response:
    # The shared job store (scale-out mode) did not answer: a moment's outage.
    return await problem_response(
        Problem(
            503,
            "Jobs unavailable",
            "Jobs cannot be reached right now; try again shortly.",
            headers={"Retry-After": "2"},
        )
    )


@bp.after_request
async def _private(resp: Response) -> Response:
    # Everything here is one client's: no cache, shared or not, may keep it.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers.pop("Expires", None)
    return resp


@bp.app_context_processor
async def _jobs_form_context() -> dict[str, Any]:
    settings = app_state().settings
    return {"job_max_items": settings.job_max_items, "job_formats": list(MEDIA_TYPES)}


# -- routes ----------------------------------------------------------------------------------


@bp.post("")
@tag(tag_names)
@document_request(JobRequest)
@responds(
    _COMMON
    | {
        **BODY_ERRORS,
        "202": {"description": "Queued; see Location. Sets the owner cookie.", "content": _JOB},
        "303": {"description": "From the gallery form: to the job's page."},
        "400": problem("Invalid items, each error naming its item and parameter."),
        "429": problem("This client has its share of jobs queued or running; see Retry-After."),
        "503": problem("Too many jobs, or no room for results; see Retry-After."),
    }
)
async def create() -> Response:
    """Start a job: render every item in the background into one PDF or ZIP."""
    runner = job_runner()
    state = app_state()
    settings = state.settings
    who = caller(settings)
    from_form = request.mimetype in FORM_TYPES
    if from_form:
        plan = await report_from_form(state.registry, settings)
    elif is_json(request.mimetype):
        plan = plan_from_json(state.registry, await json_object(), settings)
    else:
        raise unsupported_media_type("application/json")
    token = who.token or new_token()
    owner = Caller(token)
    try:
        job = await runner.create(
            plan.output, plan.stored(), client=owner.client, bucket=bucket(who)
        )
    except TooManyClientJobs as exc:
        raise Problem(
            429,
            "Too many jobs of yours",
            f"{str(exc).capitalize()} (the limit per client is "
            f"{settings.job_max_client_active}); try again when one ends.",
            headers={"Retry-After": "10"},
        ) from None
    except TooManyJobs as exc:
        raise Problem(
            503,
            "Too many jobs",
            f"{exc} (the limit is {settings.job_max_active}); try again when one ends.",
            headers={"Retry-After": "10"},
        ) from None
    except ResultsFull as exc:
        raise Problem(
            503,
            "No room for results",
            f"The disk budget of reports is full ({exc}); try again when older results expire.",
            headers={"Retry-After": str(max(1, round(exc.retry_after)))},
        ) from None
    location = url_for("jobs.job", job_id=job.id)
    if from_form:
        resp = redirect(location, 303)
    else:
        resp = _json(_shown(runner, job), 202)
        resp.headers["Location"] = location
    set_owner_cookie(resp, token, settings)
    return resp


@bp.get("")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {
            "description": f"The caller's {RECENT} newest jobs, newest first.",
            "content": {**json_of(JobList.model_json_schema()), **HTML},
        }
    }
)
async def jobs() -> Response:
    """The caller's recent jobs (the owner cookie's); every client's for the operator."""
    runner = job_runner()
    who = caller(app_state().settings)
    if who.admin:
        records = await runner.recent(RECENT)
    elif who.client is not None:
        records = await runner.recent(RECENT, who.client)
    else:
        records = []
    listed = JobList(jobs=[_shown(runner, job) for job in records])
    if wants_html():
        jobs = [job.model_dump() for job in listed.jobs]
        return Response(await render_template("jobs/list.html", jobs=jobs))
    return _json(listed)


@bp.get("/<job_id>")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {"description": "The job.", "content": {**_JOB, **HTML}},
        "404": problem("No such job of yours."),
    }
)
async def job(job_id: str) -> Response:
    """A job's state and progress; browsers get a page with a live progress bar."""
    runner = job_runner()
    info = _shown(runner, await job_or_404(runner, job_id, caller(runner.settings)))
    if wants_html():
        minutes = f"{runner.settings.job_result_ttl / 60:g}"
        html = await render_template("jobs/job.html", job=info.model_dump(), ttl_minutes=minutes)
        return Response(html)
    return _json(info)


@bp.delete("/<job_id>")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {"description": "Cancelled: no more items render.", "content": _JOB},
        "204": {"description": "An ended job: it and its result are removed."},
        "403": problem("A cross-site request."),
        "404": problem("No such job of yours."),
    }
)
async def cancel(job_id: str) -> Response:
    """Cancel a queued or running job; delete an ended one with its result."""
    runner = job_runner()
    job = await job_or_404(runner, job_id, caller(runner.settings))
    if job.active:
        # If it ended meanwhile, the answer shows how; its result is kept.
        job = await runner.cancel(job.id) or job
        return _json(_shown(runner, job))
    await runner.remove(job.id)
    return Response(b"", status=204)


@bp.get("/<job_id>/result")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {
            "description": "The PDF or ZIP, as a download.",
            "content": {
                m: {"schema": {"type": "string", "format": "binary"}} for m in OUTPUTS.values()
            },
        },
        "404": problem("No such job of yours, or its result expired."),
        "409": problem("The job has not finished, failed or was cancelled."),
    }
)
async def result(job_id: str) -> Response:
    """Download a finished job's result."""
    runner = job_runner()
    job = await job_or_404(runner, job_id, caller(runner.settings))
    if job.state is not JobState.DONE:
        detail = {
            JobState.QUEUED: "is queued",
            JobState.RUNNING: f"is running ({job.done} of {job.total} done)",
            JobState.FAILED: f"failed: {job.error}",
            JobState.CANCELLED: "was cancelled",
        }[job.state]
        headers = {"Retry-After": "2"} if job.active else {}
        raise Problem(409, "No result", f"The job {detail}; there is no result.", headers=headers)
    stored = await runner.result(job)
    if stored is None:
        raise Problem(404, "Result expired", "The result has been removed.")
    resp = Response(_StreamedResult(stored), mimetype=OUTPUTS[job.output])
    resp.content_length = stored.size
    resp.headers["Content-Disposition"] = (
        f'attachment; filename="figserve-{job.id[:8]}.{job.output}"'
    )
    resp.set_etag(f"{job.id}-{stored.size}")
    if job.finished is not None:
        resp.last_modified = job.finished
    # Range requests (an interrupted download goes on) and If-None-Match, in both modes.
    resp.headers["Accept-Ranges"] = "bytes"
    await resp.make_conditional(request, accept_ranges=True, complete_length=stored.size)
    return resp  # Cache-Control: no-store, as every job response (one client's only)


class _StreamedResult(ResponseBody):
    """A job's result as a response body: streamed in windows, with byte ranges."""

    def __init__(self, stored: ResultStream) -> None:
        self.stored = stored
        self.begin = 0
        self.end = stored.size
        self._chunks: AsyncIterator[bytes] | None = None

    async def __aenter__(self) -> AsyncIterator[bytes]:
        self._chunks = self.stored.chunks(self.begin, self.end)
        return self._chunks

    async def __aexit__(
        self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._chunks is not None and hasattr(self._chunks, "aclose"):
            await self._chunks.aclose()

    async def make_conditional(self, begin: int, end: int | None) -> int:
        size = self.stored.size
        self.begin, self.end = begin, size if end is None else min(size, end)
        if self.begin >= self.end or abs(self.begin) > size:
            raise RequestedRangeNotSatisfiable()
        return size
