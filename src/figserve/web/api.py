"""JSON API: the figure catalog, rendering from a JSON spec, and plotting uploaded data."""

from __future__ import annotations

import asyncio
from typing import Any

from quart import Blueprint, Response, url_for
from quart_schema import DataSource, document_request, tag

from ..figures.data import draw_table, resolve_columns
from ..figures.tables import DataError, Table, parse_table
from ..render import MEDIA_TYPES, Drawing, ImageOptions, RenderJob, canvas_for
from ..validation import RenderRequest, RenderSpec, from_spec
from .body import json_object
from .errors import field_error
from .forms import plot_from_form
from .images import image_response
from .openapi import BODY_ERRORS, image_responses, json_responses, responds
from .params import no_query, spec_or_404
from .schemas import PlotForm
from .state import app_state, renderer
from .versioned import STALE_HEADER, data_version

bp = Blueprint("api", __name__, url_prefix="/api")
tag_names = ["api"]


@bp.before_request
async def _no_query_string() -> None:
    # The API takes JSON or forms, never a query: a query is a mistake, so say so.
    no_query()


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


@bp.post("/render")
@tag(tag_names)
@document_request(RenderSpec)
@responds(image_responses(list(MEDIA_TYPES.values())) | BODY_ERRORS)
async def render() -> Response:
    """Render a figure from a JSON spec; answers with the image."""
    body = await json_object()
    state = app_state()
    figure = body.get("figure")
    if isinstance(figure, str) and len(figure) <= 32:
        spec_or_404(state.registry, figure)  # a well-formed name of no figure: 404
    settings = state.settings
    level = settings.png_compress_level
    checked = from_spec(state.registry, body, settings.max_pixels, png_level=level)
    # A live figure is drawn (and cached) for its current data version.
    version = await data_version(checked.spec, checked.params)
    if version is not None and version.data is not None:
        checked = RenderRequest.of(
            checked.spec, checked.params, checked.options, settings.max_pixels,
            data=version.data, png_level=level,
        )  # fmt: skip
    result = await renderer().render(checked.job)
    resp = image_response(result, filename=f"{checked.spec.name}.{checked.options.format}")
    if version is not None and not version.ok:
        resp.headers[STALE_HEADER] = "check"
    return resp


@bp.post("/plot")
@tag(tag_names)
@document_request(PlotForm, source=DataSource.FORM_MULTIPART)
@responds(image_responses(list(MEDIA_TYPES.values())) | BODY_ERRORS)
async def plot() -> Response:
    """Plot uploaded data (CSV with a header row, or .npy) as line, scatter, bar or hist."""
    settings = app_state().settings
    params, opts, data, filename = await plot_from_form(settings.max_body_bytes)

    def checked_table() -> Table:
        table = parse_table(filename, data, settings.max_upload_rows, settings.max_upload_columns)
        resolve_columns(table, params)  # the plot's limits, before anything is drawn
        return table

    try:
        # Parsing and checking a large table takes a while: keep it off the event loop.
        table = await asyncio.to_thread(checked_table)
    except DataError as exc:
        raise field_error(exc.param, str(exc), "Unusable data") from None
    job = RenderJob(
        Drawing(draw_table, (table, params)),
        canvas_for(opts, settings.max_pixels),
        opts.format,
        "upload",
    )
    result = await renderer().render(job)
    return image_response(result, filename=f"plot.{opts.format}")
