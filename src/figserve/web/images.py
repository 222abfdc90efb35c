"""Image routes: ``/figures/<name>.<fmt>`` for every registered figure, and the seed's ``/fig``.

Each route only turns HTTP into (figure, params, options) and a render result back into HTTP;
the renderer does the rest.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, create_model
from quart import Blueprint, Response, request
from quart_schema import document_querystring, hide, tag

from ..figures import FigureParams, FigureSpec, Registry
from ..live import PIN_PARAM
from ..live.entries import PIN_PATTERN
from ..render import (
    MEDIA_TYPES,
    ImageOptions,
    Rendered,
    RenderFailed,
    RenderJob,
    TooComplex,
    job_for,
)
from ..validation import FieldError, Invalid, RenderRequest, parse_flat
from . import fastpath
from .errors import SVG_CSP, Problem
from .gate import step_aside
from .openapi import image_responses, responds
from .params import parse_mean_var, single_values, spec_or_404
from .state import app_state, renderer
from .transfer import COMPRESSIBLE, encoding_for, matches, not_modified, variant_tag
from .versioned import (
    NO_STORE,
    REVALIDATE,
    STALE_HEADER,
    cache_control,
    count_stale,
    data_version,
    earlier_jobs,
    stale_reason,
    take_pin,
)


async def serve_figure(
    spec: FigureSpec, values: dict[str, Any], fixed: dict[str, Any] | None = None
) -> Response:
    state = app_state()
    values = dict(values)
    pin, pin_errors = take_pin(values)
    try:
        params, opts = parse_flat(
            spec.params, values, default_size=(spec.width, spec.height), fixed=fixed
        )
    except Invalid as exc:
        raise Invalid([*exc.errors, *pin_errors], exc.title) from None
    if pin_errors:
        raise Invalid(pin_errors)
    settings = state.settings
    level = settings.png_compress_level
    job = RenderRequest.of(spec, params, opts, settings.max_pixels, png_level=level).job
    version = await data_version(spec, params)  # after the bounds: a bad request costs no check
    if version is not None and version.data is not None:
        job = job_for(spec, params, opts, settings.max_pixels, version.data, png_level=level)
    caching = cache_control(job, version, pin)
    stale = stale_reason(version)
    live = state.versions
    if job.key is not None and live is not None and live.failed_render(job.key):
        return await _last_good(spec, params, opts, job)
    if matches(job.etag):
        # The client has exactly these bytes already (or, with ``If-None-Match: *``, any current
        # image of this URL, RFC 9110 13.1.2): no render needed. The 304 says what the 200
        # would about caching, in the coding the 200 would have.
        return _not_modified(job, caching, stale)
    step_aside()  # the render is a render process's work: let other requests start
    try:
        result = await renderer().render(job)
    except (RenderFailed, TooComplex):
        if spec.version is None or job.key is None or live is None:
            raise
        # The figure fails for its new data: keep showing the last image that drew.
        live.render_failed(job.key, spec.refresh)
        return await _last_good(spec, params, opts, job)
    if result.etag is not None and job.key is not None and version is not None and not stale:
        # Its next requests may be answered below Quart while the bytes stay cached and the
        # data version is fresh (a change drops them at once: ``Renderer.forget``).
        fresh = version.fresh_until
        fastpath.offer(key=job.key, figure=spec.name, fmt=opts.format, fresh_until=fresh)
    resp = image_response(result, filename=f"{spec.name}.{opts.format}", caching=caching)
    _mark_stale(resp, spec, stale)
    return resp


def _not_modified(job: RenderJob, caching: str, stale: str | None) -> Response:
    media_type = MEDIA_TYPES[job.format]
    vary = ["Accept-Encoding"] if media_type in COMPRESSIBLE else []
    tag = None if job.etag is None else variant_tag(job.etag, encoding_for(media_type))
    resp = not_modified(tag, caching, vary)
    if stale is not None:
        resp.headers[STALE_HEADER] = stale
    return resp


async def _last_good(
    spec: FigureSpec, params: FigureParams, opts: ImageOptions, failed: RenderJob
) -> Response:
    """The image of the newest earlier data version still cached here, marked stale; a 503 if
    there is none (drawing it again would draw today's data under yesterday's name)."""
    for job in earlier_jobs(spec, params, opts):
        assert job.key is not None and job.etag is not None
        data = renderer().cached(job.key)
        if data is None:
            continue
        if matches(job.etag):
            return _not_modified(job, REVALIDATE, "render")
        result = Rendered(data, MEDIA_TYPES[job.format], job.etag, "hit")
        resp = image_response(result, filename=f"{spec.name}.{opts.format}", caching=REVALIDATE)
        _mark_stale(resp, spec, "render")
        return resp
    raise Problem(
        503,
        "Figure failed for its data",
        f"Figure {spec.name!r} failed to draw its current data, and no earlier image of it is "
        "kept; this was logged. Try again shortly.",
        headers={"Retry-After": str(max(1, min(int(spec.refresh), 60)))},
    )


def _mark_stale(resp: Response, spec: FigureSpec, reason: str | None) -> None:
    if reason is not None and resp.status_code == 200:
        resp.headers[STALE_HEADER] = reason
        count_stale(spec.name, reason)


def image_response(result: Rendered, filename: str, caching: str | None = None) -> Response:
    """An image; ``caching`` is its ``Cache-Control`` when it has an ETag (default: revalidate
    each time)."""
    resp = Response(result.data, mimetype=result.media_type)
    if result.etag is None:
        # Every load of an unseeded random figure is a new sample.
        resp.headers["Cache-Control"] = NO_STORE
    else:
        resp.headers["ETag"] = result.etag
        resp.headers["Cache-Control"] = caching or REVALIDATE
    resp.headers["X-Render-Cache"] = result.cache
    if result.media_type == "image/svg+xml":
        resp.headers["Content-Security-Policy"] = SVG_CSP
    if result.media_type == "application/pdf":
        resp.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return resp


# The reserved ``_v`` of version-pinned URLs (a figure parameter's name starts with a letter).
PIN_FIELD = Field(
    None,
    alias=PIN_PARAM,
    pattern=f"^{PIN_PATTERN.pattern}$",
    description="Version pin, as figserve's pages write it: the image is immutable while it "
    "names the figure's current code and data version, and the current image otherwise.",
)


def _query_model(spec: FigureSpec, in_path: frozenset[str]) -> type:
    """The figure's parameters plus the image options, less those the path carries (OpenAPI)."""
    fields: dict[str, Any] = {}
    for model in (spec.params, ImageOptions):
        for name, info in model.model_fields.items():
            if name not in in_path:
                fields[name] = (info.annotation, info)
    fields["version_pin"] = (str | None, PIN_FIELD)
    name = "".join(part.title() for part in spec.name.split("_"))
    return create_model(
        f"{name}{'Seed' if 'mean' in in_path else ''}Query", __base__=FigureParams, **fields
    )


def _documented(view: Any, query: type, summary: str, media_types: list[str]) -> Any:
    view.__doc__ = summary
    view = document_querystring(query)(view)
    view = responds(image_responses(media_types))(view)
    return tag(["images"])(view)


def create_images_blueprint(registry: Registry) -> Blueprint:
    bp = Blueprint("images", __name__)

    for spec in registry:
        bp.add_url_rule(
            f"/figures/{spec.name}.<fmt>",
            endpoint=f"figure_{spec.name}",
            view_func=_documented(
                _figure_view(spec),
                _query_model(spec, frozenset({"format"})),
                f"{spec.title}: {spec.description} Formats: {', '.join(MEDIA_TYPES)}.",
                list(MEDIA_TYPES.values()),
            ),
            methods=["GET"],
        )

    async def unknown_figure(rest: str) -> Response:
        # Any other path here names no figure: answered like the image routes, so an <img>
        # shows the error as an image.
        name = rest.rpartition(".")[0] or rest
        spec_or_404(app_state().registry, name)
        raise Problem(404, "Unknown figure", f"There is no figure at /figures/{rest[:60]}.")

    bp.add_url_rule("/figures/<path:rest>", "unknown_figure", hide(unknown_figure), methods=["GET"])

    normal = registry.get("normal")
    if normal is not None:

        async def seed_figure(mean_var: str) -> Response:
            mean, var = parse_mean_var(mean_var)
            return await serve_figure(
                normal, single_values(request.args), {"mean": mean, "var": var}
            )

        bp.add_url_rule(
            "/fig/<mean_var>",
            endpoint="seed_figure",
            view_func=_documented(
                seed_figure,
                _query_model(normal, frozenset({"mean", "var"})),
                "The original app's figure: /fig/<mean>_<var>, e.g. /fig/5_3 or /fig/-2.5_0.5. "
                "Takes the same query parameters as /figures/normal.<fmt>, plus format.",
                list(MEDIA_TYPES.values()),
            ),
            methods=["GET"],
        )
    return bp


def _figure_view(spec: FigureSpec) -> Any:
    async def view(fmt: str) -> Response:
        if fmt not in MEDIA_TYPES:
            raise Problem(
                404,
                "Unknown format",
                f"{fmt[:20]!r} is not a format figserve renders; use one of: "
                f"{', '.join(MEDIA_TYPES)}.",
                [FieldError("format", f"one of {', '.join(MEDIA_TYPES)}")],
            )
        values = single_values(request.args)
        return await serve_figure(spec, values, {"format": fmt})

    view.__name__ = f"figure_{spec.name}"
    return view
