"""Job routes: start a batch of figures as one PDF or ZIP, watch it, download it, cancel it.

API clients get JSON; browsers (``Accept: text/html``) get pages with a live progress bar. Every
route reads the shared job store, so any worker answers for any job. Jobs are private: each route
shows and acts on the caller's jobs only (see ``owner.py``); someone else's job answers exactly
as an unknown one.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, redirect, render_template, request, send_file, url_for
from quart.wrappers.response import FileBody
from quart_schema import document_request, tag

from ..config import Settings
from ..figures import Registry
from ..jobs import (
    OUTPUTS,
    JobRecord,
    JobRunner,
    JobState,
    ResultsFull,
    TooManyClientJobs,
    TooManyJobs,
    is_job_id,
)
from ..render import MEDIA_TYPES, ImageOptions
from .api import CheckedSpec, RenderSpec, _options, check_render_spec
from .body import is_json, json_object, read_form, unsupported_media_type
from .errors import (
    PROBLEM_JSON,
    Problem,
    invalid,
    log_problem,
    problem_response,
    validation_errors,
)
from .openapi import PROBLEM_SCHEMA, responds
from .owner import Caller, bucket, caller, new_token, set_owner_cookie
from .params import no_query, number_errors, parse_count, single_values, unknown_keys
from .state import app_state

bp = Blueprint("jobs", __name__, url_prefix="/jobs")
tag_names = ["jobs"]
MAX_LISTED_ERRORS = 50
RECENT = 50
DOWNLOAD_CHUNK = 256 * 1024
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class JobRequest(BaseModel):
    """A batch of figures rendered in the background into one file."""

    model_config = ConfigDict(extra="forbid")

    items: list[RenderSpec] = Field(
        description="The figures, in order: one PDF page or one ZIP entry each. For a PDF, "
        "leave format out (or give pdf)."
    )
    output: Literal["pdf", "zip"] = Field(
        "pdf", description="One multi-page PDF, or a ZIP of one image per item."
    )


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


_PROBLEM = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}
_JOB = {"application/json": {"schema": JobOut.model_json_schema()}}
_HTML = {"text/html": {"schema": {"type": "string"}}}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _PROBLEM}


# Any job route: no query string is taken, and a wrong operator token is refused.
_COMMON = {
    "400": _error("A query string, or invalid items: each error names its parameter."),
    "401": _error("An Authorization header without the operator's token."),
}


# -- validation: /api/render's RenderSpec and option rules, per item ----------------------


def _validate_items(
    raw_items: list[Any], output: str, registry: Registry, max_pixels: int
) -> tuple[list[CheckedSpec], list[dict[str, str]]]:
    items: list[CheckedSpec] = []
    errors: list[dict[str, str]] = []
    for index, raw in enumerate(raw_items):
        prefix = f"items.{index}."
        if output == "pdf" and isinstance(raw, dict) and raw.get("format", "pdf") != "pdf":
            errors.append(
                {
                    "param": prefix + "format",
                    "message": "a PDF report draws every item as a page; leave format out",
                }
            )
            continue
        checked, item_errors = check_render_spec(
            registry,
            raw,
            max_pixels,
            prefix,
            defaults={"format": "pdf"} if output == "pdf" else None,
        )
        errors += item_errors
        if checked is not None:
            items.append(checked)
    return items, errors


def _pixels(checked: CheckedSpec) -> int:
    canvas = checked.job.canvas
    return canvas.width_px * canvas.height_px


def _check_cost(pixels: int, output: str, settings: Settings, param: str) -> list[dict]:
    """The job's estimated work, all its output pixels, against the budgets; before it runs."""
    if pixels > settings.job_max_pixels:
        message = (
            f"a report draws at most {settings.job_max_pixels:,} pixels in all "
            f"(these figures have {pixels:,}); use fewer or smaller figures"
        )
        return [{"param": param, "message": message}]
    if output == "pdf" and pixels > settings.job_max_pdf_pixels:
        message = (
            f"a PDF report holds at most {settings.job_max_pdf_pixels:,} pixels in all "
            f"(these figures have {pixels:,}); use fewer or smaller figures, or a ZIP"
        )
        return [{"param": param, "message": message}]
    return []


def _raise_invalid(errors: list[dict[str, str]]) -> None:
    if len(errors) > MAX_LISTED_ERRORS:
        more = len(errors) - MAX_LISTED_ERRORS
        errors = [
            *errors[:MAX_LISTED_ERRORS],
            {"param": "items", "message": f"and {more} more errors"},
        ]
    raise invalid(errors, "Invalid job")


# -- helpers ---------------------------------------------------------------------------------


def job_runner() -> JobRunner:
    runner = app_state().jobs
    if runner is None or not runner.ready:
        raise Problem(503, "Not ready", "Jobs are not running.", headers={"Retry-After": "1"})
    return runner


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", PROBLEM_JSON, "text/html"])
    return best == "text/html"


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def job_json(runner: JobRunner, job: JobRecord) -> dict[str, Any]:
    end = job.finished if job.finished is not None else runner.clock()
    return {
        "id": job.id,
        "state": job.state.value,
        "output": job.output,
        "done": job.done,
        "total": job.total,
        "progress": round(job.done / job.total, 4) if job.total else 1.0,
        "created": _iso(job.created),
        "started": _iso(job.started),
        "finished": _iso(job.finished),
        "expires": _iso(job.expires),
        "seconds": round(end - job.started, 3) if job.started is not None else None,
        "error": job.error,
        "url": url_for("jobs.job", job_id=job.id),
        "result_url": url_for("jobs.result", job_id=job.id) if job.state is JobState.DONE else None,
        "result_bytes": job.result_bytes,
        "media_type": OUTPUTS[job.output],
    }


def _caller() -> Caller:
    return caller(app_state().settings)


async def _job_or_404(runner: JobRunner, job_id: str, who: Caller) -> JobRecord:
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


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.before_request
async def _no_query_string() -> None:
    # No job route takes a query: anything there is a mistake, so say so.
    errors = no_query()
    if errors:
        raise invalid(errors)


@bp.after_request
async def _private(resp: Response) -> Response:
    # Everything here is one client's: no cache, shared or not, may keep it.
    resp.headers["Cache-Control"] = "no-store"
    resp.headers.pop("Expires", None)
    return resp


@bp.errorhandler(Problem)
async def _problem(problem: Problem) -> Response:
    # Job pages are for browsers too: errors come as a page when HTML is what the client wants.
    if _wants_html():
        log_problem(problem)
        html = await render_template("error.html", problem=problem)
        resp = Response(html, status=problem.status, mimetype="text/html")
        resp.headers.update(problem.headers)
        return _no_store(resp)
    return await problem_response(problem)


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
        "202": {"description": "Queued; see Location. Sets the owner cookie.", "content": _JOB},
        "303": {"description": "From the gallery form: to the job's page."},
        "400": _error("Invalid items, each error naming its item and parameter."),
        "403": _error("A cross-site request."),
        "413": _error("Body or form too large."),
        "415": _error("Not JSON nor a form."),
        "429": _error("This client has its share of jobs queued or running; see Retry-After."),
        "503": _error("Too many jobs, or no room for results; see Retry-After."),
    }
)
async def create() -> Response:
    """Start a job: render every item in the background into one PDF or ZIP."""
    runner = job_runner()
    state = app_state()
    settings = state.settings
    who = _caller()
    from_form = request.mimetype in FORM_TYPES
    if from_form:
        output, items = await _items_from_form(state.registry, settings)
    elif is_json(request.mimetype):
        output, items = _items_from_json(await json_object(), state.registry, settings)
    else:
        raise unsupported_media_type("application/json")
    token = who.token or new_token()
    owner = Caller(token)
    try:
        job = await runner.create(output, items, client=owner.client, bucket=bucket(who))
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
        resp = Response(_dumps(job_json(runner, job)), status=202, mimetype="application/json")
        resp.headers["Location"] = location
    set_owner_cookie(resp, token, settings)
    return resp


def _dumps(data: Any) -> str:
    return json.dumps(data)


def _items_from_json(
    body: dict[str, Any], registry: Registry, settings: Settings
) -> tuple[str, list[dict[str, Any]]]:
    errors = unknown_keys(body, {"items", "output"})
    output = body.get("output", "pdf")
    if not isinstance(output, str) or output not in OUTPUTS:
        errors.append({"param": "output", "message": f"one of pdf, zip (got {output!r:.40})"})
    raw_items = body.get("items")
    items: list[dict[str, Any]] = []
    if not isinstance(raw_items, list):
        errors.append({"param": "items", "message": "expected a list of figures"})
    elif not raw_items:
        errors.append({"param": "items", "message": "give at least one figure"})
    elif len(raw_items) > settings.job_max_items:
        message = f"at most {settings.job_max_items} items per job (got {len(raw_items)})"
        errors.append({"param": "items", "message": message})
    else:
        # With a bad output, items are still checked (as for a ZIP), so all errors come at once.
        kind = output if isinstance(output, str) and output in OUTPUTS else "zip"
        checked, item_errors = _validate_items(raw_items, kind, registry, settings.max_pixels)
        errors += item_errors
        if not item_errors:
            errors += _check_cost(sum(map(_pixels, checked)), kind, settings, "items")
        items = [c.stored() for c in checked]
    if errors:
        _raise_invalid(errors)
    return output, items


_FORM_OPTIONS = ("output", "format", "w", "h")


async def _items_from_form(
    registry: Registry, settings: Settings
) -> tuple[str, list[dict[str, Any]]]:
    """The gallery's form: figures ticked, copies of each, their parameters, size and output.

    The number of items is known from the ticked figures and their copies before anything is
    expanded, and refused over the limit before any per-item work; each figure's parameters are
    validated once, and its copies differ only in their seeds.
    """
    form, files = await read_form()
    known = {*_FORM_OPTIONS, "figure"}
    for spec in registry:
        known.add(f"copies.{spec.name}")
        known.update(f"{spec.name}.{name}" for name in spec.params.model_fields)
    errors = unknown_keys([*form.keys(), *files.keys()], known)
    try:
        values = single_values(form, repeatable=("figure",))
    except Problem as problem:
        _raise_invalid(errors + problem.errors)
    size_errors = number_errors({k: values.get(k, "") for k in ("w", "h")}, (ImageOptions,))
    errors += size_errors

    output = values.get("output") or "pdf"
    if output not in OUTPUTS:
        errors.append({"param": "output", "message": "one of pdf, zip"})
    common: dict[str, Any] = {k: values[k] for k in ("w", "h") if values.get(k)}
    if size_errors:
        common = {}
    common["format"] = (values.get("format") or "png") if output == "zip" else "pdf"
    try:
        _options(common, 400, 300)
    except ValidationError as exc:
        errors += validation_errors(exc)
        common = {"format": common["format"]} if common["format"] in MEDIA_TYPES else {}

    # What the report holds: each figure once, and a count of copies of each. With any
    # doubt about it, or over the limit, nothing further is done.
    ticked = form.getlist("figure")
    names: list[str] = []
    shape: list[dict[str, str]] = []
    for name in ticked:
        if name not in registry:
            shape.append({"param": "figure", "message": f"no figure {name[:40]!r}"})
        elif name in names:
            shape.append({"param": "figure", "message": f"{name} is ticked more than once"})
        else:
            names.append(name)
    if not ticked:
        shape.append({"param": "figure", "message": "tick at least one figure"})
    copies: dict[str, int] = {}
    for name in names:
        param = f"copies.{name}"
        copies[name], count_errors = parse_count(
            values.get(param, ""), param, default=1, largest=settings.job_max_items
        )
        shape += count_errors
    total = sum(copies.values())
    if total > settings.job_max_items:
        message = f"at most {settings.job_max_items} figures per report (got {total})"
        shape.append({"param": "copies", "message": message})
    if shape:
        _raise_invalid(errors + shape)  # before any figure is validated or copied

    items: list[dict[str, Any]] = []
    pixels = 0
    for name in names:
        spec = registry.get(name)
        assert spec is not None
        params = {
            key[len(name) + 1 :]: value
            for key, value in values.items()
            if key.startswith(f"{name}.") and value != ""
        }
        figure_errors = number_errors(params, (spec.params,), prefix=f"{name}.")
        errors += figure_errors
        bad = {e["param"] for e in figure_errors}
        params = {k: v for k, v in params.items() if f"{name}.{k}" not in bad}
        checked, item_errors = check_render_spec(
            registry,
            {"figure": name, "params": params, **common},
            settings.max_pixels,
            prefix=f"{name}.",
            params_prefix=f"{name}.",
        )
        errors += [e for e in item_errors if e not in errors]
        if checked is None or figure_errors:
            continue
        stored = checked.stored()
        seed = stored["params"].get("seed")
        if isinstance(seed, int) and copies[name] > 1:
            # Copies of a seeded random figure take the next seeds: reproducible, not equal.
            last = seed + copies[name] - 1
            try:
                spec.params.model_validate({**stored["params"], "seed": last})
            except ValidationError:
                message = f"{copies[name]} copies take the seeds {seed} to {last}, too large"
                errors.append({"param": f"{name}.seed", "message": message})
                continue
            for copy in range(copies[name]):
                items.append({**stored, "params": {**stored["params"], "seed": seed + copy}})
        else:
            items.extend(dict(stored) for _ in range(copies[name]))
        pixels += _pixels(checked) * copies[name]
    if not errors:
        errors += _check_cost(pixels, output, settings, "copies")
    if errors:
        _raise_invalid(errors)
    return output, items


@bp.get("")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {
            "description": f"The caller's {RECENT} newest jobs, newest first.",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": {"jobs": {"type": "array"}}}
                },
                **_HTML,
            },
        }
    }
)
async def jobs() -> Response:
    """The caller's recent jobs (the owner cookie's); every client's for the operator."""
    runner = job_runner()
    who = _caller()
    if who.admin:
        records = await runner.recent(RECENT)
    elif who.client is not None:
        records = await runner.recent(RECENT, who.client)
    else:
        records = []
    listed = [job_json(runner, job) for job in records]
    if _wants_html():
        return _no_store(Response(await render_template("jobs/list.html", jobs=listed)))
    return _no_store(Response(_dumps({"jobs": listed}), mimetype="application/json"))


@bp.get("/<job_id>")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {"description": "The job.", "content": {**_JOB, **_HTML}},
        "404": _error("No such job of yours."),
    }
)
async def job(job_id: str) -> Response:
    """A job's state and progress; browsers get a page with a live progress bar."""
    runner = job_runner()
    info = job_json(runner, await _job_or_404(runner, job_id, _caller()))
    if _wants_html():
        minutes = f"{runner.settings.job_result_ttl / 60:g}"
        html = await render_template("jobs/job.html", job=info, ttl_minutes=minutes)
        return _no_store(Response(html))
    return _no_store(Response(_dumps(info), mimetype="application/json"))


@bp.delete("/<job_id>")
@tag(tag_names)
@responds(
    _COMMON
    | {
        "200": {"description": "Cancelled: no more items render.", "content": _JOB},
        "204": {"description": "An ended job: it and its result are removed."},
        "403": _error("A cross-site request."),
        "404": _error("No such job of yours."),
    }
)
async def cancel(job_id: str) -> Response:
    """Cancel a queued or running job; delete an ended one with its result."""
    runner = job_runner()
    job = await _job_or_404(runner, job_id, _caller())
    if job.active:
        # If it ended meanwhile, the answer shows how; its result is kept.
        job = await runner.cancel(job.id) or job
        return _no_store(Response(_dumps(job_json(runner, job)), mimetype="application/json"))
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
        "404": _error("No such job of yours, or its result expired."),
        "409": _error("The job has not finished, failed or was cancelled."),
    }
)
async def result(job_id: str) -> Response:
    """Download a finished job's result."""
    runner = job_runner()
    job = await _job_or_404(runner, job_id, _caller())
    if job.state is not JobState.DONE:
        detail = {
            JobState.QUEUED: "is queued",
            JobState.RUNNING: f"is running ({job.done} of {job.total} done)",
            JobState.FAILED: f"failed: {job.error}",
            JobState.CANCELLED: "was cancelled",
        }[job.state]
        headers = {"Retry-After": "2"} if job.active else {}
        raise Problem(409, "No result", f"The job {detail}; there is no result.", headers=headers)
    path = runner.result_path(job)
    try:
        resp = await send_file(
            path,
            mimetype=OUTPUTS[job.output],
            as_attachment=True,
            attachment_filename=f"figserve-{job.id[:8]}.{job.output}",
            conditional=True,
        )
    except FileNotFoundError:
        raise Problem(404, "Result expired", "The result has been removed.") from None
    if isinstance(resp.response, FileBody):
        resp.response.buffer_size = DOWNLOAD_CHUNK
    return resp  # Cache-Control: no-store, as every job response (one client's only)
