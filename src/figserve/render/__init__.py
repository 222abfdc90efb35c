"""Rendering: image options, drawing and encoding, render processes, and the async renderer.

``options`` (format and size), ``encode`` (one figure to bytes), ``forkserver`` and ``pool``
(supervised render processes), ``renderer`` (thread pool, cache, limits; no HTTP).
"""

from .encode import Drawing, RenderJob, encode, job_for
from .errors import (
    Overloaded,
    RenderCrashed,
    RenderError,
    RenderFailed,
    RenderProtocolError,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from .events import Rendered, RenderObserver, RenderStats
from .options import MEDIA_TYPES, Canvas, Format, ImageOptions, LimitExceeded, canvas_for
from .renderer import Renderer

__all__ = [
    "MEDIA_TYPES",
    "Canvas",
    "Drawing",
    "Format",
    "ImageOptions",
    "LimitExceeded",
    "Overloaded",
    "RenderCrashed",
    "RenderError",
    "RenderFailed",
    "RenderJob",
    "RenderObserver",
    "RenderProtocolError",
    "RenderStats",
    "RenderTimeout",
    "RenderUnavailable",
    "Rendered",
    "Renderer",
    "TooComplex",
    "canvas_for",
    "encode",
    "job_for",
]
