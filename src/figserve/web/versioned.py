"""How an image's data version and pin turn into HTTP: caching, staleness, the last good image.

- A plain URL of a deterministic figure: ``Cache-Control: no-cache`` with a strong ETag (a
  browser asks each time; an unchanged figure costs a 304 and no render).
- A version-pinned URL (``_v``) whose pin is current: ``immutable`` for a year.
- A pinned URL whose pin is not current (older data, another release): the current image with
  ``no-cache`` and its own ETag, never a redirect (instances may disagree for a moment).
- A figure whose version check fails, or whose new version fails to draw: the last good image,
  ``no-cache``, with ``X-Figure-Stale: check`` or ``render``; with none, a 503 and
  ``Retry-After``.
"""

from __future__ import annotations

import math
import time

from ..figures import FigureParams, FigureSpec
from ..live import PIN_PARAM, DataVersion
from ..live.entries import NOT_KNOWN, PIN_PATTERN, static_version
from ..render import ImageOptions, RenderJob, job_for
from ..validation import FieldError
from .errors import Problem
from .state import app_state, versions

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
NO_STORE = "no-store"
STALE_HEADER = "X-Figure-Stale"
# Added to a figure's alt text while its data source fails (the image is the last good one).
STALE_NOTE = "(not up to date: its data source failed; showing the last good version)"


def take_pin(values: dict[str, str]) -> tuple[str | None, list[FieldError]]:
    """``_v`` out of a query (removed from ``values``), and its error if it is malformed."""
    pin = values.pop(PIN_PARAM, None)
    if pin is None or PIN_PATTERN.fullmatch(pin):
        return pin, []
    message = "a version pin as figserve's pages write it (letters, digits, - and _, 1 to 64)"
    return None, [FieldError(PIN_PARAM, message)]


async def data_version(spec: FigureSpec, params: FigureParams) -> DataVersion | None:
    """The version a request renders; None for a render that is never cached (unseeded)."""
    if not spec.deterministic(params):
        return None
    if spec.version is None:
        return static_version(spec)
    version = await versions().current(spec, params)
    if version.data is None:
        # Nothing good to show yet: its source fails, hangs or is being checked by a busy server.
        wait = version.fresh_until - time.monotonic()
        retry = max(1, min(math.ceil(wait), 60)) if math.isfinite(wait) else 1
        why = (
            "its data source has not answered yet"
            if version.error == NOT_KNOWN
            else "its data source failed; this was logged"
        )
        raise Problem(
            503,
            "Data not available",
            f"The data of figure {spec.name!r} cannot be shown now ({why}). Try again shortly.",
            headers={"Retry-After": str(retry)},
        )
    return version


def cache_control(job: RenderJob, version: DataVersion | None, pin: str | None) -> str:
    if job.key is None or version is None:
        return NO_STORE
    if pin is not None and version.ok and pin == version.pin:
        return IMMUTABLE
    return REVALIDATE


def stale_reason(version: DataVersion | None) -> str | None:
    return None if version is None or version.ok else "check"


def earlier_jobs(spec: FigureSpec, params: FigureParams, opts: ImageOptions) -> list[RenderJob]:
    """The same image under the pair's earlier good data versions, newest first."""
    state = app_state()
    live = state.versions
    if live is None or spec.version is None:
        return []
    settings = state.settings
    return [
        job_for(
            spec, params, opts, settings.max_pixels, data, png_level=settings.png_compress_level
        )
        for data in live.earlier(spec, params)
    ]


def count_stale(figure: str, reason: str) -> None:
    metrics = app_state().metrics
    if metrics is not None:
        metrics.figure_stale(figure, reason)


def page_pin(spec: FigureSpec, params: FigureParams) -> tuple[str | None, str | None]:
    """What a page puts in a figure's URL and text: its pin (None: a plain URL, which
    revalidates) and, when its data source fails, a note for the alt text."""
    if not spec.deterministic(params):
        return None, None
    if spec.version is None:
        return static_version(spec).pin, None
    live = app_state().versions
    version = live.peek(spec, params) if live is not None else None
    if version is None:
        return None, None
    if not version.ok:
        return None, STALE_NOTE
    return version.pin, None
