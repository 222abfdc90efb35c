"""Checks for your own figures: does the update path give what a fresh draw gives?

::

    from figserve.figures.testing import assert_update_matches

    def test_my_figure_updates_like_a_fresh_draw():
        spec = FIGURES.get("sales")
        assert_update_matches(spec, [spec.params(), spec.params(region="north"), spec.params()])

The figure is drawn once for the first parameters and kept; it is then moved to each of the
next parameters by its update function, and after every step its bytes are compared with those
of a figure drawn fresh for the same parameters, the way the renderer draws (``fit`` after the
draw or update function unless the figure set a layout engine; fixed SVG ids and no dates).
Compare at the sizes your pages use and at a tiny one: margins, tick counts and dropped texts
change with the size.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .layout import fit_unless_laid_out
from .registry import FigureParams, FigureSpec

DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((400, 300), (120, 80))
FORMATS = ("png", "svg", "pdf")
_SVG_SALT = "figserve"


def new_figure(width: int, height: int, dpi: float = 100.0) -> Figure:
    """A figure of ``width`` x ``height`` pixels, as the renderer makes it."""
    # A hundredth of a pixel of slack, so float rounding never drops the last pixel column.
    return Figure(figsize=((width + 0.01) / dpi, (height + 0.01) / dpi), dpi=dpi)


def draw(spec: FigureSpec, fig: Figure, params: FigureParams) -> Any:
    """``spec``'s draw function and the fitting the renderer adds; returns the handles."""
    handles = spec.draw(fig, params)
    fit_unless_laid_out(fig)
    return handles


def update(spec: FigureSpec, fig: Figure, handles: Any, params: FigureParams) -> Any:
    """``spec``'s update function and the fitting the renderer adds; returns the handles."""
    if spec.update is None:
        raise ValueError(f"figure {spec.name!r} has no update function")
    handles = spec.update(fig, handles, params)
    fit_unless_laid_out(fig)
    return handles


def image_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure's bytes in ``fmt``: raw RGBA pixels for "png" (what the PNG holds), and
    SVG and PDF with nothing that changes from one save to the next."""
    buf = io.BytesIO()
    if fmt == "png":
        fig.savefig(buf, format="rgba", dpi=fig.dpi)
    elif fmt == "svg":
        with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT}):
            fig.savefig(buf, format="svg", dpi=fig.dpi, metadata={"Date": None})
    elif fmt == "pdf":
        fig.savefig(buf, format="pdf", dpi=fig.dpi, metadata={"CreationDate": None})
    else:
        raise ValueError(f"compare png, svg or pdf, not {fmt!r}")
    return buf.getvalue()


def assert_update_matches(
    spec: FigureSpec,
    params_sequence: Iterable[FigureParams],
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    formats: Sequence[str] = FORMATS,
    dpi: float = 100.0,
) -> None:
    """Raise AssertionError, naming the step, the size and the format, if a figure kept and
    moved through ``params_sequence`` by ``spec.update`` ever differs from a fresh draw."""
    steps = list(params_sequence)
    if not steps:
        raise ValueError("give at least one set of parameters")
    for width, height in sizes:
        kept = new_figure(width, height, dpi)
        handles = draw(spec, kept, steps[0])
        for i, params in enumerate(steps):
            if i:
                handles = update(spec, kept, handles, params)
            fresh = new_figure(width, height, dpi)
            draw(spec, fresh, params)
            for fmt in formats:
                got, want = image_bytes(kept, fmt), image_bytes(fresh, fmt)
                if got != want:
                    raise AssertionError(
                        f"figure {spec.name!r} at {width}x{height}, {fmt}: after updates to "
                        f"step {i} ({_shown(params)}) it differs from a fresh draw"
                        + _difference(got, want, fmt, kept)
                    )


def _shown(params: FigureParams) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.model_dump().items())
    return text if len(text) <= 300 else text[:299] + "…"


def _difference(got: bytes, want: bytes, fmt: str, fig: Figure) -> str:
    if fmt != "png" or len(got) != len(want):
        return f" ({len(got):,} bytes against {len(want):,})"
    a = np.frombuffer(got, np.uint8).reshape(-1, 4)
    b = np.frombuffer(want, np.uint8).reshape(-1, 4)
    changed = np.flatnonzero((a != b).any(axis=1))
    width = round(fig.get_figwidth() * fig.dpi)
    first = divmod(int(changed[0]), width)
    return f" ({changed.size:,} pixels differ, the first at row {first[0]}, column {first[1]})"
