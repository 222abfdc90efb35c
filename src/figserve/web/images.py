"""Image routes: ``/figures/<name>.<fmt>`` for every registered figure, and the seed's ``/fig``.

Each route only turns HTTP into (figure, params, options) and a render result back into HTTP;
the renderer does the rest.
"""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import create_model
from quart import Blueprint, Response, request
from quart_schema import document_querystring, hide, tag

from ..figures import FigureParams, FigureSpec, Registry
from ..render import MEDIA_TYPES, ImageOptions, Rendered
from ..validation import FieldError, RenderRequest, parse_flat
from . import fastpath
from .errors import SVG_CSP, Problem
from .openapi import image_responses, responds
from .params import parse_mean_var, single_values, spec_or_404
from .state import app_state, renderer
from .transfer import COMPRESSIBLE, encoding_for, matches, not_modified, variant_tag

IMMUTABLE = "public, max-age=31536000, immutable"


async def serve_figure(
    spec: FigureSpec, values: dict[str, Any], fixed: dict[str, Any] | None = None
) -> Response:
    state = app_state()
    params, opts = parse_flat(
        spec.params, values, default_size=(spec.width, spec.height), fixed=fixed
    )
    settings = state.settings
    job = RenderRequest.of(
        spec, params, opts, settings.max_pixels, png_level=settings.png_compress_level
    ).job
    if job.etag is not None and matches(job.etag):
        # The client has exactly these bytes already: no render needed. The 304 says what
        # the 200 would about caching, in the coding the 200 would have.
        media_type = MEDIA_TYPES[opts.format]
        vary = ["Accept-Encoding"] if media_type in COMPRESSIBLE else []
        return not_modified(variant_tag(job.etag, encoding_for(media_type)), IMMUTABLE, vary)
    result = await renderer().render(job)
    if result.etag is not None and job.key is not None:
        # Its next requests may be answered below Quart while the bytes stay cached.
        fresh = math.inf if spec.version is None else time.monotonic() + spec.refresh
        fastpath.offer(key=job.key, figure=spec.name, fmt=opts.format, fresh_until=fresh)
    return image_response(result, filename=f"{spec.name}.{opts.format}")


def image_response(result: Rendered, filename: str) -> Response:
    resp = Response(result.data, mimetype=result.media_type)
    _cache_headers(resp, result.etag)
    resp.headers["X-Render-Cache"] = result.cache
    if result.media_type == "image/svg+xml":
        resp.headers["Content-Security-Policy"] = SVG_CSP
    if result.media_type == "application/pdf":
        resp.headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return resp


def _cache_headers(resp: Response, etag: str | None) -> None:
    if etag is None:
        # Every load of an unseeded random figure is a new sample.
        resp.headers["Cache-Control"] = "no-store"
    else:
        resp.headers["ETag"] = etag
        resp.headers["Cache-Control"] = IMMUTABLE


def _query_model(spec: FigureSpec, in_path: frozenset[str]) -> type:
    """The figure's parameters plus the image options, less those the path carries (OpenAPI)."""
    fields: dict[str, Any] = {}
    for model in (spec.params, ImageOptions):
        for name, info in model.model_fields.items():
            if name not in in_path:
                fields[name] = (info.annotation, info)
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
