"""One image from one figure function: the render job, its identity, drawing and encoding.

A ``RenderJob`` is picklable (the figure function travels by reference to its module), so the
same job is encoded in a render process or, in tests, right here.

A deterministic job's ``key`` (and so its strong ETag) is its identity: everything its bytes
depend on. That is the figure's name and parameters, the format, the canvas (pixels and dpi),
the PNG compression level, the figure's code version (``figures/identity.py``: its source and
its own modules', figserve's source, the library versions, the matplotlib settings) and the
version of the data it draws. A render process answers with the code version of what it really
ran, and the renderer never caches or tags bytes whose version differs from the job's.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..figures import FigureParams, FigureSpec
from ..figures.identity import figure_version
from ..figures.layout import fit_unless_laid_out
from . import warm
from .options import Canvas, ImageOptions, canvas_for
from .process import Result
from .warm import warm_key

# SVG element ids come from this salt instead of random numbers: same figure, same bytes.
SVG_HASHSALT = "figserve"


@dataclass(frozen=True)
class Drawing:
    """``fn(fig, *args)``: a figure function with its arguments, picklable by reference."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]

    def __call__(self, fig: Figure) -> Any:
        """Draw on ``fig``; returns what the function returns (a figure's handles)."""
        return self.fn(fig, *self.args)


@dataclass(frozen=True)
class RenderJob:
    """Everything needed to produce one image, and nothing about who asked for it."""

    drawing: Drawing
    canvas: Canvas
    format: str
    label: str  # figure name, for logs and metrics
    key: str | None = None  # set when the output is deterministic, so it may be cached
    spec: FigureSpec | None = None  # the registered figure drawn, if it is one
    version: str | None = None  # the figure's code version where the job was made
    png_level: int | None = None  # None: the level the renderer is configured with

    @property
    def etag(self) -> str | None:
        return f'"{self.key[:40]}"' if self.key else None

    @property
    def warm_key(self) -> str | None:
        """Which kept figure a render process may update for this job (see ``warm.py``); None
        for a figure without an update function."""
        if self.spec is None or self.spec.update is None:
            return None
        c = self.canvas
        return warm_key(self.label, self.version, c.width_px, c.height_px, c.dpi)

    def run(self, png_level: int) -> Result:
        """Draw and encode in a render process, on a kept figure where it may; tells the code
        version it really ran and whether a kept figure was used."""
        level = self.png_level if self.png_level is not None else png_level
        meta: dict[str, Any] = {}
        data = render_warm(self, level, meta)
        meta["version"] = figure_version(self.spec) if self.spec is not None else None
        return Result(data, meta)


def job_for(
    spec: FigureSpec,
    params: FigureParams,
    opts: ImageOptions,
    max_pixels: int,
    data: str | None = None,
    *,
    png_level: int | None = None,
) -> RenderJob:
    """The job that draws ``spec`` with ``params`` as ``opts`` asks. ``data`` is the version of
    the data it draws (None for figures without ``version=``); ``png_level`` the zlib level of
    PNG output (None: the renderer's; give it wherever the key is used, it changes the bytes).
    Only a deterministic job (no randomness, or a seed) gets a key."""
    canvas = canvas_for(opts, max_pixels)
    version = figure_version(spec)
    key = None
    if spec.deterministic(params):
        ident = {
            "figure": spec.name,
            "params": params.model_dump(mode="json"),
            "format": opts.format,
            "canvas": [canvas.width_px, canvas.height_px, canvas.dpi],
            "png": png_level if opts.format == "png" else None,
            "code": version,
            "data": data,
        }
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    drawing = Drawing(spec.draw, (params,))
    return RenderJob(drawing, canvas, opts.format, spec.name, key, spec, version, png_level)


def _save_options(fmt: str, png_level: int) -> dict[str, Any]:
    # Fixed metadata: no creation dates, so seeded SVG/PDF output is byte-identical.
    if fmt == "png":
        return {"pil_kwargs": {"compress_level": png_level}}
    if fmt == "svg":
        return {"metadata": {"Date": None}}
    if fmt == "pdf":
        return {"metadata": {"CreationDate": None}}
    if fmt == "webp":
        return {"pil_kwargs": {"quality": 90, "method": 4}}
    if fmt == "jpeg":
        return {"pil_kwargs": {"quality": 90}}
    raise ValueError(f"unknown format {fmt!r}")


def encode(job: RenderJob, png_level: int = 6) -> bytes:
    """Draw and encode one figure on a fresh Figure, private to the call."""
    fig, _handles = draw(job)
    return save(fig, job, png_level)


def draw(job: RenderJob) -> tuple[Figure, Any]:
    """A fresh Figure with the job's figure drawn on it, and the handles its function returned."""
    fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
    handles = job.drawing(fig)
    fit_margins(fig)
    return fig, handles


def fit_margins(fig: Figure) -> None:
    """Margins that fit the labels, measured without drawing (``figures.layout.fit``), for a
    figure that set no layout engine (see the figure guide); the renderer's one call site."""
    fit_unless_laid_out(fig)


def save(fig: Figure, job: RenderJob, png_level: int) -> bytes:
    """Encode ``fig`` as the job's format; saving leaves the figure as it was, so a kept figure
    saves the same bytes as a fresh one."""
    buf = io.BytesIO()
    if job.format == "png":
        # savefig draws exactly as for its own PNG (layout passes included); only the
        # encoding differs, see _png.
        fig.savefig(buf, format="rgba", dpi=job.canvas.dpi)
        return _png(
            buf.getbuffer(), job.canvas.width_px, job.canvas.height_px, job.canvas.dpi, png_level
        )
    options = _save_options(job.format, png_level)
    if job.format == "svg":
        with matplotlib.rc_context({"svg.hashsalt": SVG_HASHSALT}):
            fig.savefig(buf, format="svg", dpi=job.canvas.dpi, **options)
    else:
        fig.savefig(buf, format=job.format, dpi=job.canvas.dpi, **options)
    return buf.getvalue()


_PNG_SOFTWARE = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/".encode()


def _png(rgba: memoryview, width: int, height: int, dpi: float, level: int) -> bytes:
    """The PNG matplotlib would write (same pixels and metadata), for a fraction of the CPU.

    Pillow tries every PNG filter on every row; on flat-coloured plots filter "none" compresses
    as well or better and costs nothing, which makes encoding 3-5x cheaper. Opaque images (all
    of them unless a figure sets a transparent background) are stored as RGB: same pixels,
    fewer bytes.
    """
    if len(rgba) != width * height * 4:
        raise ValueError(f"expected {width}x{height} RGBA pixels, got {len(rgba)} bytes")
    opaque = bool((np.frombuffer(rgba, "<u4") >= 0xFF000000).all())
    channels, color_type = (3, 2) if opaque else (4, 6)
    pixels = Image.frombuffer("RGBA", (width, height), rgba, "raw", "RGBA", 0, 1).tobytes(
        "raw", "RGB" if opaque else "RGBA"
    )
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # column 0: filter type "none"
    rows[:, 1:] = np.frombuffer(pixels, np.uint8).reshape(height, -1)
    ppm = int(dpi / 0.0254 + 0.5)  # pixels per metre, rounded as Pillow does
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)),
            _png_chunk(b"tEXt", b"Software\0" + _PNG_SOFTWARE),
            _png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)),
            _png_chunk(b"IDAT", zlib.compress(rows, level)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def render_warm(job: RenderJob, png_level: int, meta: dict[str, Any]) -> bytes:
    """The job's bytes, drawn on a kept figure where this process keeps one.

    ``meta`` gets ``warm``: ``hit`` (a kept figure was updated), ``miss`` (drawn fresh, and
    kept) or ``off`` (not kept: no update function, or this process keeps none), and
    ``update_failed`` (the error, when an update raised: the figure was dropped and drawn
    fresh)."""
    kept, key = warm.installed(), job.warm_key
    if kept is None or key is None or job.spec is None or job.spec.update is None:
        meta["warm"] = "off"
        return encode(job, png_level)
    entry = kept.take(key)
    if entry is not None:
        try:
            handles = job.spec.update(entry.fig, entry.handles, *job.drawing.args)
            fit_margins(entry.fig)
            data = save(entry.fig, job, png_level)
        except Exception as exc:  # the figure's update function: drop the figure, draw anew
            meta["update_failed"] = warm.describe_error(exc)
        else:
            kept.give(key, warm.Kept(entry.fig, handles))
            meta["warm"] = "hit"
            return data
    fig, handles = draw(job)
    data = save(fig, job, png_level)
    kept.give(key, warm.Kept(fig, handles))
    meta["warm"] = "miss"
    return data
