"""Job routes: start a batch of figures as one PDF or ZIP, watch it, download it, cancel it.

API clients get JSON; browsers (``Accept: text/html``) get pages with a live progress bar. Every
route reads the shared job store, so any worker answers for any job. Jobs are private: each route
shows and acts on the caller's jobs only (see ``owner.py``); someone else's job answers exactly
as an unknown one.
"""

from __future__ import annotations

from quart import Blueprint, Response, redirect, render_template, request, url_for
from quart_schema import document_request, tag

from ..jobs import (
    OUTPUTS,
    JobPlan,
    JobRecord,
    JobRequest,
    JobService,
    JobState,
    JobsUnavailable,
    ResultsFull,
    StoreFull,
    TooManyClientJobs,
    TooManyJobs,
    is_job_id,
    plan_from_json,
)
from ..validation import Invalid
from .body import is_json, json_object, read_form, unsupported_media_type
from .downloads import download
from .errors import Problem, invalid, problem_response, wants_html
from .forms import report_form, report_plan
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
    "401": problem("A bearer token in Authorization that is not the operator's."),
    "503": problem("The job store did not answer in time, or cannot be used now; see Retry-After."),
}


def job_runner() -> JobService:
    runner = app_state().jobs
    if runner is None or not runner.ready:
        why = runner.problem if runner is not None else "not started"
        raise Problem(
            503,
            "Jobs unavailable",
            f"Jobs cannot be used now ({why}); try again shortly.",
            headers={"Retry-After": "2"},
        )
    return runner


def _who(runner: JobService) -> Caller:
    return caller(runner.settings, runner.owner_key)


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
    # The job store did not answer in time, or cannot be used now: never a hang, never a 500.
    return await problem_response(
        Problem(
            503,
            "Jobs unavailable",
            f"Jobs cannot be used right now ({exc}); try again shortly.",
            headers={"Retry-After": str(max(1, round(exc.retry_after)))},
        )
    )


@bp.after_request
async def _private(resp: Response) -> Response:
    # Everything here is one client's: no cache, shared or not, may keep it.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers.pop("Expires", None)
    return resp


async def _form_plan(runner: JobService) -> JobPlan:
    """The gallery form's plan; a browser whose form has errors gets the form back, filled in
    as it was sent, each error at its field."""
    state = app_state()
    form, files = await read_form()
    try:
        return report_plan(state.registry, runner.settings, form, files)
    except Invalid as exc:
        if not wants_html():
            raise
        problem = invalid(exc.errors, exc.title)
        report = report_form(state.registry, runner.settings, form, exc.errors)
        html = await render_template("jobs/report.html", report=report, problem=problem)
        raise _Answered(Response(html, status=400, mimetype="text/html")) from None


class _Answered(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


@bp.errorhandler(_Answered)
async def _answered(exc: _Answered) -> Response:
    return exc.response


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
        "503": problem(
            "Too many jobs, no room for results, or the job store did not answer; see Retry-After."
        ),
    }
)
async def create() -> Response:
    """Start a job: render every item in the background into one PDF or ZIP."""
    runner = job_runner()
    state = app_state()
    settings = state.settings
    who = _who(runner)
    from_form = request.mimetype in FORM_TYPES
    if from_form:
        plan = await _form_plan(runner)
    elif is_json(request.mimetype):
        plan = plan_from_json(state.registry, await json_object(), settings)
    else:
        raise unsupported_media_type("application/json")
    token = who.token or new_token(runner.owner_key)
    owner = Caller(token)
    try:
        job = await runner.create(plan.output, plan.stored(), owner.client, bucket(who), plan.paper)
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
    except StoreFull as exc:
        raise Problem(503, "No room for jobs", f"{exc}.", headers={"Retry-After": "60"}) from None
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
    who = _who(runner)
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
    info = _shown(runner, await job_or_404(runner, job_id, _who(runner)))
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
    job = await job_or_404(runner, job_id, _who(runner))
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
        "206": {"description": "One byte range of it (Range), with Content-Range."},
        "304": {"description": "Unchanged (If-None-Match or If-Modified-Since)."},
        "404": problem("No such job of yours, or its result expired."),
        "409": problem("The job has not finished, failed or was cancelled."),
        "412": problem("If-Match or If-Unmodified-Since names another result."),
        "416": problem("No range asked for lies within the result; see Content-Range."),
    }
)
async def result(job_id: str) -> Response:
    """Download a finished job's result."""
    runner = job_runner()
    job = await job_or_404(runner, job_id, _who(runner))
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
    return download(job, stored)
