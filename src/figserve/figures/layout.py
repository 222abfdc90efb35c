"""Margins that fit a figure's texts, measured without drawing it: ``fit(fig)``.

A layout engine (``layout="constrained"`` or ``"tight"``) makes ``savefig`` draw the whole
figure once to measure it and again to output it. ``fit`` sets the same kind of margins from
the texts alone: it asks each axis for the tick labels it will show, measures them and the other
texts (axis labels, titles, offset texts, the figure's legends and titles; see ``extents``),
and sets the subplot parameters so that they fit, in a few passes (how many ticks an axis shows
depends on its length, which the margins change). The ticks it measured in its last pass are
the ones drawn: it keeps them for the draw (what the axis' own locator and formatter give at the
same view and size), until the next ``fit`` of the figure puts the axis' own locator and
formatter back.

Handled: figures whose axes are cells of one grid made by ``add_subplot``, ``subplots`` or
``add_gridspec()`` (any number of rows and columns, spans, twins, shared axes), colour bars made
with ``fig.colorbar(..., ax=ax)`` beside them, and figure legends and texts (``fig.legend``,
``suptitle``, ``supxlabel``, ``supylabel``) at the figure's edges. A figure too small for its
texts drops them, in this order, until the axes keep ``MIN_SHARE`` of the figure: figure
legends, axis labels, titles, then tick labels (with their offset texts); what is drawn is
never cut.

Left alone (``fit`` returns False and changes nothing): figures with a layout engine, figures
whose own code set their margins (``subplots_adjust``, ``tight_layout``), axes placed by
coordinates (``add_axes``), axes of other projections (polar, 3D), grids with margins of their
own, and subfigures. Texts and legends placed outside the axes by coordinates
(``bbox_to_anchor``, ``ax.text`` with ``clip_on=False``) are not measured.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec, SubplotParams
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.ticker import Formatter, Locator
from matplotlib.transforms import Bbox

from .extents import (
    Measure,
    Measured,
    Sides,
    Span,
    Ticks,
    axes_need,
    figure_edges,
    measure_for,
    ticks_key,
    titles_need,
    titles_of,
)

EDGE_PT = 4.0  # room left between the outermost text and the figure's edge
GAP_PT = 8.0  # room left between the texts of neighbouring cells
# The axes keep at least this share of their cell's width and height; texts that would take
# more are dropped (see the module docstring).
MIN_SHARE = 0.3
_PASSES = 3
_SETTLED_PT = 0.5  # margins that move less than this between passes have settled
# Fixed starting point: the passes begin from the same layout however the figure was made.
_START = {"left": 0.125, "right": 0.9, "bottom": 0.11, "top": 0.88, "wspace": 0.2, "hspace": 0.2}


@dataclass
class _Changed:
    """What ``fit`` changed on a figure besides its margins, so that the next ``fit`` starts
    from the figure as its draw or update function left it."""

    params: tuple[float, ...] = ()  # the subplot parameters fit set
    hidden: list[Text | Legend] = field(default_factory=list)
    tick_labels: list[tuple[Axis, str]] = field(default_factory=list)
    # axis -> the fixed locator fit set, and the locator, formatter and default flags it took
    fixed: dict[Axis, tuple[Locator, Locator, Formatter, bool, bool]] = field(default_factory=dict)


_changed: weakref.WeakKeyDictionary[Figure, _Changed] = weakref.WeakKeyDictionary()


def fit(fig: Figure, *, edge: float = EDGE_PT) -> bool:
    """Set the subplot parameters of ``fig`` so that its texts fit, without drawing it.

    Deterministic: the result depends on the figure's contents and size only, not on earlier
    calls, so a figure updated in place and then fitted comes out as one drawn fresh.
    Returns False, changing nothing, for a figure whose shape it does not handle.
    """
    grid = _grid(fig)
    if grid is None:
        return False
    earlier = _changed.get(fig)
    margins = _margins(fig)
    if margins != _margins(SubplotParams()) and (earlier is None or margins != earlier.params):
        return False  # the figure's own code set them (subplots_adjust, tight_layout)
    _undo(fig)
    changed = _Changed()
    measure = measure_for(fig.dpi)
    drops = _drop_steps(fig)
    while True:
        fits, measured = _place(fig, grid, measure, edge)
        if fits or not drops:
            break
        drops.pop(0)(changed)
    _fix_ticks(measured, changed)
    changed.params = _margins(fig)
    _changed[fig] = changed
    return True


def _margins(fig_or_params: Figure | SubplotParams) -> tuple[float, ...]:
    params = fig_or_params.subplotpars if isinstance(fig_or_params, Figure) else fig_or_params
    return tuple(getattr(params, k) for k in ("left", "right", "bottom", "top", "wspace", "hspace"))


def fit_unless_laid_out(fig: Figure) -> bool:
    """``fit`` for a figure that set no layout engine (what the renderer does after a figure's
    draw and update functions); a figure with a layout engine is left to it."""
    if fig.get_layout_engine() is not None:
        return False
    return fit(fig)


def text_width(fig: Figure, text: str, size: float | str = "medium") -> float:
    """How wide ``text`` is drawn in ``fig`` at font ``size``, in points, without drawing."""
    x0, _, x1, _ = measure_for(fig.dpi).box(Text(text=text, fontsize=size), text)
    return x1 - x0


def _place(fig: Figure, grid: GridSpec, measure: Measure, edge: float) -> tuple[bool, Measured]:
    """Set the subplot parameters from a fixed start, pass by pass. Returns whether everything
    fits, and what the last pass measured (at the layout it leaves)."""
    fig.subplots_adjust(**_START)
    # The figure's legends and texts are placed in the figure, whatever its margins.
    edges = figure_edges(fig, measure)
    solved = _solve(fig, grid, measure, edge, edges)
    for _ in range(_PASSES):
        if solved.params is None or _settled(fig, solved.params):
            break
        fig.subplots_adjust(**solved.params)
        solved = _solve(fig, grid, measure, edge, edges)
    else:
        # Still moving: take the room of both last passes. The ticks measured stay fixed, so
        # the smaller axes draw the same labels.
        if solved.params is not None:
            fig.subplots_adjust(**_roomier(fig, solved.params))
    fits = (
        solved.params is not None and solved.fits and _within(fig, solved.measured.spans, measure)
    )
    return fits, solved.measured


def _settled(fig: Figure, params: dict[str, float]) -> bool:
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    current = fig.subplotpars
    return all(
        abs(getattr(current, k) - params[k]) * (wide if k in ("left", "right") else high)
        < _SETTLED_PT
        for k in ("left", "right", "bottom", "top")
    ) and all(abs(getattr(current, k) - params[k]) < 1e-3 for k in ("wspace", "hspace"))


def _roomier(fig: Figure, params: dict[str, float]) -> dict[str, float]:
    current = fig.subplotpars
    return {
        "left": max(current.left, params["left"]),
        "right": min(current.right, params["right"]),
        "bottom": max(current.bottom, params["bottom"]),
        "top": min(current.top, params["top"]),
        "wspace": max(current.wspace, params["wspace"]),
        "hspace": max(current.hspace, params["hspace"]),
    }


# --- which figures --------------------------------------------------------------------------


def _grid(fig: Figure) -> GridSpec | None:
    """The one grid every axes of ``fig`` sits in, or None if ``fit`` leaves the figure alone."""
    if fig.get_layout_engine() is not None or fig.subfigs or not fig.axes:
        return None
    grids = set()
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is None or ax.name != "rectilinear":
            return None
        grids.add(spec.get_topmost_subplotspec().get_gridspec())
    if len(grids) != 1:
        return None
    (grid,) = grids
    own = (grid.left, grid.right, grid.bottom, grid.top, grid.wspace, grid.hspace)
    if not isinstance(grid, GridSpec) or grid.figure is not fig or any(v is not None for v in own):
        return None
    return grid


def _cells(fig: Figure) -> dict[tuple[int, int, int, int], list[Axes]]:
    """Axes by the grid cell they sit in: (first row, last row, first column, last column)."""
    out: dict[tuple[int, int, int, int], list[Axes]] = {}
    for ax in fig.axes:
        if ax.get_visible():
            top = ax.get_subplotspec().get_topmost_subplotspec()
            rows, cols = top.rowspan, top.colspan
            out.setdefault((rows.start, rows.stop - 1, cols.start, cols.stop - 1), []).append(ax)
    return out


# --- solving for the subplot parameters -------------------------------------------------------


@dataclass
class _Solved:
    params: dict[str, float] | None  # None: no room left for the axes at all
    fits: bool  # the axes keep MIN_SHARE of their cells, the figure's texts lie within it
    measured: Measured


def _solve(
    fig: Figure, grid: GridSpec, measure: Measure, edge: float, edges: tuple[Sides, bool]
) -> _Solved:
    """Subplot parameters that fit the texts as measured at the current layout, around what
    the figure's own legends and texts take at its edges."""
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    nrows, ncols = grid.get_geometry()
    measured = Measured()
    left_of: dict[int, float] = {}  # column -> points its cells take on their left
    right_of: dict[int, float] = {}
    above: dict[int, float] = {}  # row -> points its cells take above
    below: dict[int, float] = {}
    for (r0, r1, c0, c1), axes in _cells(fig).items():
        need = _cell_need(fig, axes, measure, measured)
        left_of[c0] = max(left_of.get(c0, 0.0), need.left)
        right_of[c1] = max(right_of.get(c1, 0.0), need.right)
        above[r0] = max(above.get(r0, 0.0), need.top)
        below[r1] = max(below.get(r1, 0.0), need.bottom)
    gap_w = max(
        (right_of.get(c, 0.0) + left_of.get(c + 1, 0.0) + GAP_PT for c in range(ncols - 1)),
        default=0.0,
    )
    gap_h = max(
        (below.get(r, 0.0) + above.get(r + 1, 0.0) + GAP_PT for r in range(nrows - 1)),
        default=0.0,
    )
    outer, inside = edges

    def side(cells: float, taken: float) -> float:
        # The figure's legends and texts lie outside everything the cells take.
        return cells + (taken + GAP_PT / 2 if taken else edge)

    left = side(left_of.get(0, 0.0), outer.left)
    right = side(right_of.get(ncols - 1, 0.0), outer.right)
    bottom = side(below.get(nrows - 1, 0.0), outer.bottom)
    top = side(above.get(0, 0.0), outer.top)
    cell_w = (wide - left - right - (ncols - 1) * gap_w) / ncols
    cell_h = (high - bottom - top - (nrows - 1) * gap_h) / nrows
    fits = inside and cell_w >= MIN_SHARE * wide / ncols and cell_h >= MIN_SHARE * high / nrows
    if cell_w <= 0 or cell_h <= 0:
        return _Solved(None, fits, measured)
    params = {
        "left": left / wide,
        "right": 1 - right / wide,
        "bottom": bottom / high,
        "top": 1 - top / high,
        "wspace": gap_w / cell_w,
        "hspace": gap_h / cell_h,
    }
    return _Solved(params, fits, measured)


def _cell_need(fig: Figure, axes: list[Axes], measure: Measure, measured: Measured) -> Sides:
    """Points the texts of a cell's axes take beyond the cell's edges."""
    cell = axes[0].get_subplotspec().get_topmost_subplotspec().get_position(fig)
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    need = Sides()
    boxes = {ax: _drawn_box(ax, measure) for ax in axes}
    owns = {
        ax: axes_need(ax, box.width * wide, box.height * high, measure, measured)
        for ax, box in boxes.items()
    }
    # Axes sharing a cell are twins (or a colour bar): titles keep clear of all their texts.
    x_above = max(own.x_above for own in owns.values())
    offset_above = max(own.offset_above for own in owns.values())
    for ax, box in boxes.items():
        own = owns[ax].sides
        own.top = max(own.top, titles_need(ax, x_above, offset_above, measure, measured))
        need.grow(
            Sides(
                own.left - (box.x0 - cell.x0) * wide,
                own.right - (cell.x1 - box.x1) * wide,
                own.bottom - (box.y0 - cell.y0) * high,
                own.top - (cell.y1 - box.y1) * high,
            )
        )
    return need


def _drawn_box(ax: Axes, measure: Measure) -> Bbox:
    """Where the axes will be drawn, in figure coordinates: its cell, made smaller by a fixed
    aspect (``set_aspect``, ``set_box_aspect``: images, colour bars) or its axes locator, as the
    draw does (which does it again from the cell)."""
    locator = ax.get_axes_locator()
    ax.apply_aspect(locator(ax, measure.renderer) if locator else None)
    return ax.get_position(original=False)


def _within(fig: Figure, spans: list[Span], measure: Measure) -> bool:
    """Whether texts placed along their axes (see ``Span``) lie within the figure."""
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    for span in spans:
        box = _drawn_box(span.ax, measure)
        start, length, limit = (
            (box.x0 * wide, box.width * wide, wide)
            if span.horizontal
            else (box.y0 * high, box.height * high, high)
        )
        at = start + span.frac * length
        if at + span.low < 0 or at + span.high > limit:
            return False
    return True


# --- what fit changes besides the margins, and undoing it -----------------------------------


def _fix_ticks(measured: Measured, changed: _Changed) -> None:
    """Keep the ticks the last pass measured for the draw: no tick can appear that was not
    measured, and the draw does not ask the locator and formatter again (three times)."""
    done = set()
    for axis, ticks in measured.ticks.items():
        if id(axis.major) not in done:  # shared axes share one locator and formatter
            done.add(id(axis.major))
            _fix(axis, ticks, changed)


class _KeptLocator(Locator):
    """The ticks an axis' own locator gave within the view at the view and size ``fit``
    measured (those outside are never drawn: leaving them out spares making their tick
    objects); asked at another view or size, or for anything else, the axis' own locator
    answers."""

    def __init__(self, own: Locator, ticks: Ticks) -> None:
        self.own = own
        self.ticks = ticks

    def __call__(self) -> list[float]:
        if ticks_key(self.axis) == (self.ticks.view, self.ticks.size):
            return list(self.ticks.locs)
        return list(self.own())

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        return self.own.tick_values(vmin, vmax)

    def nonsingular(self, v0: float, v1: float) -> tuple[float, float]:
        return self.own.nonsingular(v0, v1)

    def view_limits(self, vmin: float, vmax: float) -> tuple[float, float]:
        return self.own.view_limits(vmin, vmax)

    def set_params(self, **kwargs: object) -> None:
        self.own.set_params(**kwargs)


class _KeptFormatter(Formatter):
    """The labels and offset text the axis' own formatter gave (for all the ticks its locator
    gave) to the ticks ``_KeptLocator`` keeps; for other values, the axis' own formatter."""

    def __init__(self, own: Formatter, ticks: Ticks) -> None:
        self.own = own
        self.ticks = ticks
        self._kept = False

    def format_ticks(self, values: object) -> list[str]:
        self._kept = tuple(values) == self.ticks.locs and (  # type: ignore[arg-type]
            ticks_key(self.axis)[0] == self.ticks.view
        )
        if self._kept:
            return list(self.ticks.labels)
        return self.own.format_ticks(values)

    def get_offset(self) -> str:
        return self.ticks.offset if self._kept else self.own.get_offset()

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self.own(x, pos)

    def set_locs(self, locs: object) -> None:
        self.own.set_locs(locs)

    def format_data(self, value: float) -> str:
        return self.own.format_data(value)

    def format_data_short(self, value: float) -> str:
        return self.own.format_data_short(value)


def _fix(axis: Axis, ticks: Ticks, changed: _Changed) -> None:
    own_locator, own_formatter = axis.get_major_locator(), axis.get_major_formatter()
    locator = _KeptLocator(own_locator, ticks)
    changed.fixed[axis] = (
        locator,
        own_locator,
        own_formatter,
        axis.isDefault_majloc,
        axis.isDefault_majfmt,
    )
    axis.set_major_locator(locator)
    axis.set_major_formatter(_KeptFormatter(own_formatter, ticks))


def _undo(fig: Figure) -> None:
    changed = _changed.pop(fig, None)
    if changed is None:
        return
    for artist in changed.hidden:
        artist.set_visible(True)
    for axis, side in changed.tick_labels:
        axis.set_tick_params(which="both", **{f"label{side}": True})
    for axis, (fixed, locator, formatter, default_loc, default_fmt) in changed.fixed.items():
        # Unless the figure's own code set ticks of its own since.
        if axis.get_major_locator() is fixed:
            axis.set_major_locator(locator)
            axis.set_major_formatter(formatter)
            axis.isDefault_majloc, axis.isDefault_majfmt = default_loc, default_fmt


def _drop_steps(fig: Figure) -> list[Callable[[_Changed], None]]:
    """Steps that each hide one kind of text, in the order they are taken."""

    def hide(artists: Iterable[Text | Legend]) -> Callable[[_Changed], None]:
        def step(changed: _Changed) -> None:
            for artist in artists:
                if artist.get_visible():
                    artist.set_visible(False)
                    changed.hidden.append(artist)

        return step

    def hide_tick_labels(changed: _Changed) -> None:
        for ax in fig.axes:
            for axis, sides in ((ax.xaxis, ("bottom", "top")), (ax.yaxis, ("left", "right"))):
                tick = axis.get_major_ticks(1)[0]
                for side, label in zip(sides, (tick.label1, tick.label2), strict=True):
                    if label.get_visible():
                        axis.set_tick_params(which="both", **{f"label{side}": False})
                        changed.tick_labels.append((axis, side))
                hide([axis.get_offset_text()])(changed)

    legends = list(fig.legends)
    axis_labels = [a.label for ax in fig.axes for a in (ax.xaxis, ax.yaxis)]
    titles = [t for ax in fig.axes for t in titles_of(ax)] + list(fig.texts)
    return [hide(legends), hide(axis_labels), hide(titles), hide_tick_labels]
