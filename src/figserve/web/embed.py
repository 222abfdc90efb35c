"""Figures in pages: one ``<img>`` per figure, sized, described and sharp on every screen.

``figure(name, **params)`` is a Jinja global of every page, figserve's own and the user's:
``{{ figure("histogram", bins=40, seed=1) }}`` gives

    <picture><source type="image/webp"
         srcset="/figures/histogram.webp?bins=40&seed=1&w=400&h=300 1x, ...&dpr=1.25 1.25x, ...">
    <img src="/figures/histogram.png?bins=40&seed=1&w=400&h=300"
         srcset="... 1x, ...&dpr=1.25 1.25x, ...&dpr=1.5 1.5x, ... 3x"
         width="400" height="300" alt="Histogram of 1000 samples ..." decoding="async"
         fetchpriority="high"></picture>

A PNG comes with the same figure in WebP beside it, which every current browser takes: half
the bytes or less for a plot, the same pixels to the eye (a figure asked for with an explicit
``format`` is given as asked, alone).

``live=True`` makes the page keep that image at its figure's current version: the ``<img>``
gets ``data-live`` (the figure and parameters it follows) and the page, once, the script
``static/live.js``, which listens to the page's stream (``web/live.py``) and swaps the image when
its version changes.

The first figure of a page is fetched first (``fetchpriority="high"``); the next few load at
once beside it, the rest when they come near the screen (``loading="lazy"``). Parameters are
checked as the image route will check them: a wrong one gives an ``<img>`` whose URL answers
with the error drawn as an image, in place, never a failed page.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape
from quart import Quart, g, has_request_context, url_for

from ..live import PIN_PARAM
from ..live.streams import live_key
from ..render import MEDIA_TYPES, ImageOptions, canvas_for
from ..render.options import LimitExceeded
from ..validation import FieldError, Invalid, RenderRequest, parse_flat
from .state import app_state
from .versioned import STALE_NOTE, page_pin

log = logging.getLogger("figserve.web")

# The densities screens have (laptops at 125% and 150%, phones at 1.75, 2 and 3); each candidate
# of a srcset is the same figure with more pixels, and a screen takes the first that is enough.
DENSITIES: tuple[float, ...] = (1, 1.25, 1.5, 1.75, 2, 3)
# Figures of a page that load at once; later ones wait until they come near the screen. Six
# fill a wide screen of cards, and a browser opens six connections to one host.
EAGER = 6
RASTER = frozenset({"png", "webp", "jpeg"})
_LOADING = frozenset({"eager", "lazy"})


def _text(value: Any) -> str | None:
    """A keyword's value as it travels in a URL; None leaves it out."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _number(value: float) -> str:
    return f"{value:g}"


def _position() -> int:
    """1 for the first figure of this page, 2 for the next..."""
    if not has_request_context():
        return 1
    count = g.get("_figserve_figures", 0) + 1
    g._figserve_figures = count
    return count


def img_tag(
    base: str,
    query: Mapping[str, str],
    *,
    width: int,
    height: int,
    alt: str,
    densities: Sequence[float] = DENSITIES,
    sizes: str | None = None,
    loading: str | None = None,
    css_class: str | None = None,
    error: bool = False,
    webp: tuple[str, Mapping[str, str]] | None = None,
    live: str | None = None,
    stale: bool = False,
) -> Markup:
    """The ``<img>`` of a figure at ``base`` (a path) with ``query``; a candidate per density
    (``dpr`` added), as density descriptors or, given ``sizes``, as width descriptors.

    ``webp``: the same figure in WebP (a path, and what to add to the query), offered first in
    a ``<picture>``. ``live``: the key of the figure and parameters a live page keeps current
    (``live_script`` follows); ``stale``: its alt text says its data source fails."""
    src = f"{base}?{urlencode(query)}" if query else base
    attrs: list[tuple[str, str]] = [("src", src)]
    if len(densities) > 1:
        attrs.append(("srcset", _srcset(base, query, densities, width, sizes)))
        if sizes:
            attrs.append(("sizes", sizes))
    attrs += [("width", str(width)), ("height", str(height)), ("alt", alt)]
    if css_class:
        attrs.append(("class", css_class))
    if error:
        attrs.append(("data-figure-error", ""))
    if live is not None:
        attrs.append(("data-live", live))
        if stale:  # its alt text ends with STALE_NOTE
            attrs.append(("data-live-stale", ""))
    attrs.append(("decoding", "async"))
    position = _position()
    if loading in _LOADING:
        attrs.append(("loading", loading))
    elif position > EAGER:
        attrs.append(("loading", "lazy"))
    if position == 1 and loading != "lazy":
        attrs.append(("fetchpriority", "high"))
    html = " ".join(f'{name}="{escape(value)}"' for name, value in attrs)
    tag = Markup(f"<img {html}>")
    if webp is not None:
        webp_base, extra = webp
        source = [("type", "image/webp")]
        candidates = _srcset(webp_base, {**query, **extra}, densities, width, sizes)
        source.append(("srcset", candidates))
        if sizes:
            source.append(("sizes", sizes))
        source_html = " ".join(f'{name}="{escape(value)}"' for name, value in source)
        tag = Markup(f"<picture><source {source_html}>{tag}</picture>")
    return tag + live_script() if live is not None else tag


def live_script() -> Markup:
    """The script of live pages, the first time a page asks for it (nothing after that)."""
    if has_request_context():
        if g.get("_figserve_live_script"):
            return Markup("")
        g._figserve_live_script = True
    state = app_state()
    src = url_for("static", filename="live.js")
    stream = url_for("live.stream")
    return Markup(
        f'<script src="{escape(src)}" data-stream="{escape(stream)}" '
        f'data-max="{state.settings.live_max_figures}" data-stale-note="{escape(STALE_NOTE)}" '
        "defer></script>"
    )


def _srcset(
    base: str,
    query: Mapping[str, str],
    densities: Sequence[float],
    width: int,
    sizes: str | None,
) -> str:
    """A candidate per density (``dpr`` added; the first is the plain URL)."""
    candidates = []
    for d in densities:
        shown = dict(query) if d == 1 else {**query, "dpr": _number(d)}
        url = f"{base}?{urlencode(shown)}" if shown else base
        descriptor = f"{round(width * d)}w" if sizes else f"{_number(d)}x"
        candidates.append(f"{url} {descriptor}")
    return ", ".join(candidates)


def densities_for(opts: ImageOptions, max_pixels: int) -> tuple[float, ...]:
    """The densities worth a candidate: raster images whose density the request leaves open,
    each within the pixel limit (a larger one would be drawn at the limit anyway)."""
    if opts.format not in RASTER or {"dpr", "dpi"} & opts.model_fields_set:
        return (1,)
    return tuple(d for d in DENSITIES if d == 1 or opts.w * opts.h * d * d <= max_pixels)


def figure(name: str, /, **keywords: Any) -> Markup:
    """The Jinja global ``figure(name, **params)``: see the module's docstring.

    Besides the figure's parameters it takes the image options (``w``, ``h``, ``format``,
    ``dpr``, ``dpi``), ``live`` and, for the tag itself, ``alt``, ``sizes``, ``loading`` and
    ``class_``.
    """
    state = app_state()
    live = bool(keywords.pop("live", False))
    alt = keywords.pop("alt", None)
    sizes = keywords.pop("sizes", None)
    loading = keywords.pop("loading", None)
    css_class = keywords.pop("class_", None)
    values = {k: t for k, v in keywords.items() if (t := _text(v)) is not None}
    asked = "format" in values  # a format given is served as given, alone
    fmt = values.pop("format", "png")
    spec = state.registry.get(name)
    if spec is None or fmt not in MEDIA_TYPES:
        # The image route answers this URL with the error drawn as an image.
        w, h = _box(values)
        base = f"/figures/{quote(str(name)[:40], safe='')}.{quote(fmt[:20], safe='')}"
        message = f"no figure {str(name)[:40]!r}" if spec is None else f"no format {fmt[:20]!r}"
        return _failed(base, values, w, h, message, alt, css_class)
    base = url_for(f"images.figure_{spec.name}", fmt=fmt)
    try:
        params, opts = parse_flat(
            spec.params, values, default_size=(spec.width, spec.height), fixed={"format": fmt}
        )
        RenderRequest.of(spec, params, opts, state.settings.max_pixels)
    except Invalid as exc:
        w, h = _box(values, (spec.width, spec.height))
        return _failed(base, values, w, h, _message(exc.errors), alt, css_class)
    query = {**values, "w": str(opts.w), "h": str(opts.h)}
    pin, note = page_pin(spec, params)
    if pin is not None:
        query[PIN_PARAM] = pin  # a version-pinned URL: cached for good, new when it changes
    text = spec.alt_text(params) if alt is None else str(alt)
    return img_tag(
        base,
        query,
        width=opts.w,
        height=opts.h,
        alt=text if note is None else f"{text} {note}",
        densities=densities_for(opts, state.settings.max_pixels),
        sizes=None if sizes is None else str(sizes),
        loading=None if loading is None else str(loading),
        css_class=None if css_class is None else str(css_class),
        webp=None if asked else webp_of(url_for(f"images.figure_{spec.name}", fmt="webp"), fmt),
        # A random figure without a seed has no versions: every load is a new sample.
        live=live_key(spec.name, params) if live and spec.deterministic(params) else None,
        stale=note is not None,
    )


def webp_of(webp_base: str, fmt: str) -> tuple[str, dict[str, str]] | None:
    """The WebP beside an image in format ``fmt``: for PNG only (JPEG is photographs' format,
    and vectors and PDF stay as they are)."""
    return (webp_base, {}) if fmt == "png" else None


def _message(errors: Sequence[FieldError]) -> str:
    return "; ".join(f"{e.param}: {e.message}" for e in errors)


def _box(values: Mapping[str, str], default: tuple[int, int] = (400, 300)) -> tuple[int, int]:
    """The box a failed figure keeps on the page: its size if that is valid, else a default."""
    try:
        opts = ImageOptions.model_validate(
            {"w": values.get("w", default[0]), "h": values.get("h", default[1])}
        )
        canvas_for(opts, 10**12)
    except (ValueError, LimitExceeded):
        return default
    return opts.w, opts.h


def _failed(
    base: str,
    values: Mapping[str, str],
    width: int,
    height: int,
    message: str,
    alt: Any,
    css_class: Any,
) -> Markup:
    log.info("page figure error path=%s detail=%r", base, message[:200])
    return img_tag(
        base,
        values,
        width=width,
        height=height,
        alt=f"Figure error: {message}" if alt is None else str(alt),
        densities=(1,),
        loading="eager",
        css_class=None if css_class is None else str(css_class),
        error=True,
    )


def install(app: Quart) -> None:
    app.jinja_env.globals["figure"] = figure
