"""HTML pages: the gallery, the seed's multi-image page, a figure's result page, the API docs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, ValidationError
from quart import Blueprint, Response, current_app, request, url_for
from quart_schema import hide

from ..figures import FigureParams, FigureSpec
from ..figures.catalog import NormalParams, shared_window
from ..live import PIN_PARAM
from ..live.streams import live_key
from ..render import MEDIA_TYPES, ImageOptions
from ..validation import Invalid, parse_flat, pydantic_errors
from .apidocs import endpoints, schema_type
from .embed import densities_for, img_tag, webp_of
from .errors import Problem
from .forms import form_fields, report_form
from .pagecache import own_page
from .params import (
    format_number,
    mean_var_in_range,
    parse_mean_var,
    single_values,
    spec_or_404,
)
from .state import app_state
from .versioned import page_pin

bp = Blueprint("pages", __name__)

PREVIEW_W, PREVIEW_H = 320, 240
# The address examples on /docs name when no public URL is set: the quick start's.
QUICK_START_ORIGIN = "http://127.0.0.1:8000"
# The figure page's "live" switch: a form field of its own, never a figure parameter (the name
# is reserved), and never part of the image's URL.
LIVE = "live"
LIVE_ON = frozenset({"1", "on", "true"})


def _non_default(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_defaults=True)


@bp.get("/")
@hide
async def index() -> Response:
    state = app_state()

    def build() -> tuple[dict[str, Any], int]:
        cards = []
        for spec in state.registry:
            cards.append(
                {
                    "spec": spec,
                    # Previews are fixed samples, so browsers cache them.
                    "preview": {"seed": 1} if spec.random else {},
                    # Figures of changing data keep their preview current.
                    "live": spec.version is not None,
                    "fields": form_fields(spec.params, {}),
                    "options": form_fields(ImageOptions, {}, skip={"dpi", "dpr"}),
                }
            )
        report = report_form(state.registry, state.settings)
        return {"cards": cards, "width": PREVIEW_W, "height": PREVIEW_H, "report": report}, 200

    return await own_page("pages/index.html", "index", build)


@bp.get("/normal/<mean_var>")
@hide
async def normal_page(mean_var: str) -> Response:
    mean, var = parse_mean_var(mean_var)
    try:
        NormalParams(mean=mean, var=var)
    except ValidationError as exc:
        raise Invalid(pydantic_errors(exc)) from None
    spec = app_state().registry.get("normal")
    if spec is None:
        raise Problem(404, "Not Found", "The normal figure is not registered.")

    def build() -> tuple[dict[str, Any], int]:
        variants = _variants(mean, var)
        # One window for every variant, so the six can be compared.
        lo, hi = shared_window(variants)
        window = {"lo": format_number(lo), "hi": format_number(hi)}
        images = []
        for m, v in variants:
            params = NormalParams(mean=m, var=v, lo=lo, hi=hi)
            path = f"{format_number(m)}_{format_number(v)}"
            href = url_for("images.seed_figure", mean_var=path)
            pin, _ = page_pin(spec, params)
            query = window if pin is None else {**window, PIN_PARAM: pin}
            images.append(
                {
                    "img": img_tag(
                        href,
                        query,
                        width=spec.width,
                        height=spec.height,
                        alt=spec.alt_text(params),
                        webp=(href, {"format": "webp"}),
                    ),
                    "caption": f"mean {format_number(m)}, spread {format_number(v)}",
                    "href": f"{href}?{urlencode(window)}",
                }
            )
        context = {
            "mean": format_number(mean),
            "var": format_number(var),
            "lo": window["lo"],
            "hi": window["hi"],
            "images": images,
            "width": spec.width,
            "height": spec.height,
        }
        return context, 200

    return await own_page("pages/normal.html", ("normal", mean, var), build)


def _variants(mean: float, var: float, count: int = 6) -> list[tuple[float, float]]:
    """The requested figure and neighbours around it, all within the figure's limits."""
    candidates = [
        (mean, var),
        (mean, var * 2),
        (mean, var / 2),
        (mean + var, var),
        (mean - var, var),
        (-mean, var),
        (mean, var * 4),
        (mean, var / 4),
        (mean, var / 8),
        (mean, var / 16),
    ]
    out: list[tuple[float, float]] = []
    for m, v in candidates:
        if not mean_var_in_range(f"{format_number(m)}_{format_number(v)}"):
            continue
        if (m, v) not in out:
            out.append((m, v))
        if len(out) == count:
            break
    return out


@bp.get("/gallery/<name>")
@hide
async def figure_page(name: str) -> Response:
    state = app_state()
    spec = spec_or_404(state.registry, name)
    values = single_values(request.args)
    live = values.pop(LIVE, "") in LIVE_ON

    def build() -> tuple[dict[str, Any], int]:
        errors: dict[str, str] = {}
        result = None
        try:
            params, opts = parse_flat(spec.params, values, default_size=(spec.width, spec.height))
        except Invalid as exc:
            errors = {e.param: e.message for e in exc.errors}
        else:
            result = _result(spec, params, opts, live)
        shown = set(spec.params.model_fields) | (set(ImageOptions.model_fields) - {"dpi", "dpr"})
        context = {
            "spec": spec,
            "result": result,
            "errors": errors,
            # Errors of keys that have no field in the form (unknown ones, dpi, dpr): apart.
            "other_errors": {k: v for k, v in errors.items() if k not in shown},
            "known": [*spec.params.model_fields, *ImageOptions.model_fields],
            "fields": form_fields(spec.params, values, errors),
            "options": form_fields(ImageOptions, values, errors, skip={"dpi", "dpr"}),
            "live": live,
        }
        return context, 400 if errors else 200

    key = ("gallery", spec.name, live, tuple(sorted(values.items())))
    return await own_page("pages/figure.html", key, build)


def _result(
    spec: FigureSpec, params: FigureParams, opts: ImageOptions, live: bool = False
) -> dict[str, Any]:
    query = {**_non_default(params), **_non_default(opts)}
    query.pop("format", None)
    query.setdefault("w", opts.w)
    query.setdefault("h", opts.h)
    base = url_for(f"images.figure_{spec.name}", fmt=opts.format)
    # The permalink revalidates (it shows the figure as it is when opened); what this page
    # shows is pinned to the version it was drawn with.
    plain = f"{base}?{urlencode(query)}"
    pin, note = page_pin(spec, params)
    shown = {k: str(v) for k, v in query.items()}
    if pin is not None:
        shown[PIN_PARAM] = pin
    alt = spec.alt_text(params) if note is None else f"{spec.alt_text(params)} {note}"
    return {
        "src": f"{base}?{urlencode(shown)}",
        "img": img_tag(
            base,
            shown,
            width=opts.w,
            height=opts.h,
            alt=alt,
            densities=densities_for(opts, app_state().settings.max_pixels),
            webp=webp_of(url_for(f"images.figure_{spec.name}", fmt="webp"), opts.format),
            live=live_key(spec.name, params) if live and spec.deterministic(params) else None,
            stale=note is not None,
        ),
        # Never from the Host header, which the client chooses: the operator's public address,
        # or a link relative to this page.
        "permalink": app_state().settings.public_url.rstrip("/") + plain,
        "plain": plain,
        "format": opts.format,
        "media_type": MEDIA_TYPES[opts.format],
        "width": opts.w,
        "height": opts.h,
        "alt": alt,
        "seeded": spec.deterministic(params),
        "random": spec.random,
    }


@bp.app_template_filter("schema_type")
def _schema_type_filter(schema: dict[str, Any]) -> str:
    return schema_type(schema)


@bp.get("/docs")
@hide
async def docs() -> Response:
    provider = current_app.extensions["QUART_SCHEMA"].openapi_provider
    base = app_state().settings.public_url.rstrip("/") or QUICK_START_ORIGIN

    def build() -> tuple[dict[str, Any], int]:
        schema = provider.schema()
        return {"schema": schema, "endpoints": endpoints(schema, base), "base": base}, 200

    return await own_page("pages/docs.html", "docs", build)


@bp.get("/favicon.ico")
@hide
async def favicon() -> Response:
    # Browsers ask for it on every page; answer cheaply instead of logging a 404 each time.
    return Response(b"", status=204, headers={"Cache-Control": "public, max-age=86400"})
