"""JSON API: the figure catalog, rendering from a JSON spec, and plotting uploaded data."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, Response, request, url_for
from quart_schema import DataSource, document_request, tag
from werkzeug.exceptions import RequestEntityTooLarge

from ..figures import FigureParams, FigureSpec, Registry
from ..figures.data import DataError, PlotParams, draw_table, parse_table, resolve_columns
from ..render import (
    MEDIA_TYPES,
    Drawing,
    Format,
    ImageOptions,
    LimitExceeded,
    RenderJob,
    canvas_for,
    job_for,
)
from .body import json_object, read_form, unsupported_media_type
from .errors import invalid, validation_errors
from .images import image_response
from .openapi import PROBLEM_SCHEMA, image_responses, json_responses, responds
from .params import no_query, number_errors, single_values, spec_or_404, unknown_keys
from .state import app_state, renderer

_PROBLEM = {"application/problem+json": {"schema": PROBLEM_SCHEMA}}

bp = Blueprint("api", __name__, url_prefix="/api")
tag_names = ["api"]


class RenderSpec(BaseModel):
    """A figure to render: which one, its parameters, and the output format and size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    figure: str = Field(max_length=32, description="Name of a figure from GET /api/figures.")
    params: dict[str, Any] = Field(default_factory=dict, description="The figure's parameters.")
    format: Format = "png"
    w: int | None = Field(None, description="Width in CSS pixels (default: the figure's).")
    h: int | None = Field(None, description="Height in CSS pixels (default: the figure's).")
    dpr: float | None = Field(None, description="Device pixel ratio, 1-3.")
    dpi: int | None = Field(None, description="Dots per inch, instead of dpr.")


class PlotForm(PlotParams):
    """Form fields of an upload; the data itself comes in the file field ``file``."""

    format: Format = "png"
    w: int | None = None
    h: int | None = None
    dpr: float | None = None
    dpi: int | None = None


@bp.get("/figures")
@tag(tag_names)
@responds(json_responses({"schema": {"type": "object"}}, 400))
async def catalog() -> dict[str, Any]:
    """Every figure with its parameter schema and URLs."""
    state = app_state()
    return {
        "formats": MEDIA_TYPES,
        "image_options": ImageOptions.model_json_schema(),
        "figures": [
            {
                "name": spec.name,
                "title": spec.title,
                "description": spec.description,
                "random": spec.random,
                "image_url": url_for(f"images.figure_{spec.name}", fmt="png"),
                "page_url": url_for("pages.figure_page", name=spec.name),
                "default_size": {"w": spec.width, "h": spec.height},
                "params": spec.params.model_json_schema(),
            }
            for spec in state.registry
        ],
    }


@dataclass(frozen=True)
class CheckedSpec:
    """A render spec that passed every check, with the job that renders it."""

    spec: FigureSpec
    params: FigureParams
    opts: ImageOptions
    job: RenderJob

    def stored(self) -> dict[str, Any]:
        """The form kept in the job store: plain JSON, validated again when it is rendered."""
        return {
            "figure": self.spec.name,
            "params": self.params.model_dump(mode="json"),
            "options": self.opts.model_dump(mode="json", exclude_unset=True),
        }


def check_render_spec(
    registry: Registry,
    raw: Any,
    max_pixels: int,
    prefix: str = "",
    params_prefix: str | None = None,
    defaults: dict[str, Any] | None = None,
) -> tuple[CheckedSpec | None, list[dict[str, str]]]:
    """Check a ``RenderSpec``-shaped object: ``/api/render``'s body, or one item of a job.

    Returns the validated render and no errors, or None and every error found, each naming its
    parameter under ``prefix``.
    """
    params_prefix = prefix + "params." if params_prefix is None else params_prefix
    if not isinstance(raw, dict):
        return None, [{"param": prefix.rstrip(".") or "body", "message": "expected an object"}]
    errors: list[dict[str, str]] = []
    values = {**(defaults or {}), **raw}
    try:
        spec_in = RenderSpec.model_validate(values)
    except ValidationError as exc:
        errors = validation_errors(exc, prefix)
        if any(e["type"] != "extra_forbidden" for e in exc.errors()):
            return None, errors
        # Only unknown keys: check the rest too, so every error is listed at once.
        spec_in = RenderSpec.model_validate(
            {k: values[k] for k in RenderSpec.model_fields & values.keys()}
        )
    spec = registry.get(spec_in.figure)
    if spec is None:
        names = ", ".join(s.name for s in registry)
        message = f"no figure {spec_in.figure!r}; one of: {names}"
        return None, [*errors, {"param": prefix + "figure", "message": message}]
    params = opts = job = None
    try:
        params = spec.params.model_validate(spec_in.params)
    except ValidationError as exc:
        errors += validation_errors(exc, params_prefix)
    try:
        opts = _options(spec_in.model_dump(exclude_unset=True), spec.width, spec.height)
    except ValidationError as exc:
        errors += validation_errors(exc, prefix)
    if params is not None and opts is not None:
        try:
            job = job_for(spec, params, opts, max_pixels)
        except LimitExceeded as exc:
            errors.append({"param": prefix + exc.param, "message": str(exc)})
    if errors or params is None or opts is None or job is None:
        return None, errors
    return CheckedSpec(spec, params, opts, job), []


def _options(values: dict[str, Any], default_w: int, default_h: int) -> ImageOptions:
    given = {k: v for k, v in values.items() if k in ImageOptions.model_fields and v is not None}
    given.setdefault("w", default_w)
    given.setdefault("h", default_h)
    return ImageOptions.model_validate(given)


_BODY_ERRORS = {
    "403": {"description": "A cross-site request.", "content": _PROBLEM},
    "408": {"description": "The body did not arrive in time.", "content": _PROBLEM},
    "413": {"description": "Body too large.", "content": _PROBLEM},
    "415": {"description": "Wrong Content-Type.", "content": _PROBLEM},
}


@bp.before_request
async def _no_query_string() -> None:
    # The API takes JSON or forms, never a query: a query is a mistake, so say so.
    errors = no_query()
    if errors:
        raise invalid(errors)


@bp.post("/render")
@tag(tag_names)
@document_request(RenderSpec)
@responds(image_responses(list(MEDIA_TYPES.values())) | _BODY_ERRORS)
async def render() -> Response:
    """Render a figure from a JSON spec; answers with the image."""
    body = await json_object()
    state = app_state()
    figure = body.get("figure")
    if isinstance(figure, str) and len(figure) <= 32:
        spec_or_404(state.registry, figure)  # a well-formed name of no figure: 404
    checked, errors = check_render_spec(state.registry, body, state.settings.max_pixels)
    if checked is None:
        raise invalid(errors)
    result = await renderer().render(checked.job)
    return image_response(result, filename=f"{checked.spec.name}.{checked.opts.format}")


@bp.post("/plot")
@tag(tag_names)
@document_request(PlotForm, source=DataSource.FORM_MULTIPART)
@responds(image_responses(list(MEDIA_TYPES.values())) | _BODY_ERRORS)
async def plot() -> Response:
    """Plot uploaded data (CSV with a header row, or .npy) as line, scatter, bar or hist."""
    state = app_state()
    settings = state.settings
    if request.mimetype != "multipart/form-data":
        raise unsupported_media_type("multipart/form-data")
    form, files = await read_form()
    # Unknown fields are errors whatever their value; each field and the file come once.
    errors = unknown_keys([*form.keys(), *files.keys()], {*PlotForm.model_fields, "file"})
    errors += [
        {"param": k, "message": "a form field, not a file"}
        for k in files
        if k in PlotForm.model_fields
    ]
    if len(files.getlist("file")) > 1:
        errors.append({"param": "file", "message": "attach one file"})
    upload = files.get("file")
    if upload is None:
        errors.append({"param": "file", "message": "attach the data as a file field 'file'"})
    values = single_values(form)
    errors += number_errors(values, (PlotForm,))
    if errors:
        raise invalid(errors)
    fields = {k: v for k, v in values.items() if v != ""}
    try:
        form_in = PlotForm.model_validate(fields)
        opts = _options(fields, 640, 400)
    except ValidationError as exc:
        raise invalid(validation_errors(exc)) from None
    params = PlotParams.model_validate(form_in.model_dump(include=set(PlotParams.model_fields)))
    assert upload is not None
    data = upload.read(settings.max_body_bytes + 1)
    if len(data) > settings.max_body_bytes:  # the body limit makes this impossible; be sure
        raise RequestEntityTooLarge()
    try:
        # Parsing a large CSV takes a while: keep it off the event loop.
        table = await asyncio.to_thread(
            parse_table,
            upload.filename or "",
            data,
            settings.max_upload_rows,
            settings.max_upload_columns,
        )
        resolve_columns(table, params)
    except DataError as exc:
        raise invalid([{"param": exc.param, "message": str(exc)}], "Unusable data") from None
    job = RenderJob(
        Drawing(draw_table, (table, params)),
        canvas_for(opts, settings.max_pixels),
        opts.format,
        "upload",
    )
    result = await renderer().render(job)
    return image_response(result, filename=f"plot.{opts.format}")
