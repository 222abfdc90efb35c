"""Margins that fit a figure's texts, measured without drawing it.

A layout engine (``layout="constrained"`` or ``"tight"``) makes ``savefig`` draw the whole
figure once to measure it and again to output it. ``fit(fig)`` sets the same kind of margins
from the texts alone: it asks each axis for the tick labels it will show, measures them and the
other texts (axis labels, titles, offset texts, legends and titles of the figure) with the font
machinery of the Agg renderer, and sets the subplot parameters so that they fit. Measured sizes
are kept per process, so labels seen before cost a dictionary lookup.

Handled: figures whose axes are cells of one grid made by ``add_subplot``, ``subplots`` or
``add_gridspec()`` (any number of rows and columns, spans, twins, shared axes), colour bars made
with ``fig.colorbar(..., ax=ax)`` beside them, and figure legends and texts (``fig.legend``,
``suptitle``, ``supxlabel``, ``supylabel``) at the figure's edges. A figure too small for its
texts drops them, in this order, until the axes keep a fair share of the figure: figure legends,
axis labels, titles, then tick labels (with their offset texts); what is drawn is never cut.

Left alone (``fit`` returns False and changes nothing): figures with a layout engine, axes
placed by coordinates (``add_axes``), axes of other projections (polar, 3D), grids with margins
of their own, and subfigures. Texts and legends placed outside the axes by coordinates
(``bbox_to_anchor``, ``ax.text`` with ``clip_on=False``) are not measured.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from matplotlib.axes import Axes
from matplotlib.axis import Axis, XAxis
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec, SubplotSpec
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import IdentityTransform

EDGE_PT = 4.0  # room left between the outermost text and the figure's edge
GAP_PT = 8.0  # room left between the texts of neighbouring cells
# The axes keep at least this share of their cell's width and height; texts that would take
# more are dropped (see the module docstring).
MIN_SHARE = 0.3
_PASSES = 3  # how many ticks an axis shows depends on its length, which the margins change
_CACHE_SIZE = 8192
_SPINE_PT = 1.0  # half a spine's width, rounded up
_OFFSET_PAD_PT = 3.0  # matplotlib's gap between tick labels and an axis' offset text
# Figure texts and legends count as belonging to an edge when they lie this close to it
# (as a share of the figure's size).
_EDGE_BAND = 0.25


@dataclass
class _Sides:
    """Points taken beyond a box's left, right, bottom and top edges."""

    left: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    top: float = 0.0

    def grow(self, other: _Sides) -> None:
        self.left = max(self.left, other.left)
        self.right = max(self.right, other.right)
        self.bottom = max(self.bottom, other.bottom)
        self.top = max(self.top, other.top)


@dataclass
class _Dropped:
    """What ``fit`` hid on a figure, so the next call starts from the figure as drawn."""

    artists: list[Text | Legend] = field(default_factory=list)
    tick_labels: list[tuple[Axis, str]] = field(default_factory=list)


_dropped: weakref.WeakKeyDictionary[Figure, _Dropped] = weakref.WeakKeyDictionary()
_local = threading.local()
_boxes: OrderedDict[tuple[object, ...], tuple[float, float, float, float]] = OrderedDict()
_boxes_lock = threading.Lock()


def fit(fig: Figure, *, edge: float = EDGE_PT) -> bool:
    """Set the subplot parameters of ``fig`` so that its texts fit, without drawing it.

    Deterministic: the result depends on the figure's contents and size only, not on earlier
    calls, so a figure updated in place and then fitted comes out as one drawn fresh.
    Returns False, changing nothing, for a figure whose shape it does not handle.
    """
    grid = _grid(fig)
    if grid is None:
        return False
    _restore(fig)
    dropped = _Dropped()
    measure = _measurer(fig.dpi)
    drops = _drop_order(fig)
    while not _place(fig, grid, measure, edge) and drops:
        drops.pop(0)(dropped)
    if dropped.artists or dropped.tick_labels:
        _dropped[fig] = dropped
    return True


def _place(fig: Figure, grid: GridSpec, measure: _Measure, edge: float) -> bool:
    """Set the subplot parameters from a fixed start, pass by pass; whether everything fits."""
    fig.subplots_adjust(**_DEFAULT_PARAMS)
    solved = _solve(fig, grid, measure, edge)
    for _ in range(_PASSES):
        if solved.params is None or _close(solved.params, fig.subplotpars):
            break
        fig.subplots_adjust(**solved.params)
        solved = _solve(fig, grid, measure, edge)
    return solved.fits and _within(fig, solved.spans)


def fit_unless_laid_out(fig: Figure) -> bool:
    """``fit`` for a figure that set no layout engine (what the renderer does after a figure's
    draw and update functions); a figure with a layout engine is left to it."""
    if fig.get_layout_engine() is not None:
        return False
    return fit(fig)


# Fixed starting point: the passes begin from the same layout however the figure was made.
_DEFAULT_PARAMS = {
    "left": 0.125,
    "right": 0.9,
    "bottom": 0.11,
    "top": 0.88,
    "wspace": 0.2,
    "hspace": 0.2,
}


def _close(params: dict[str, float], current: object) -> bool:
    return all(abs(getattr(current, k) - v) < 1e-9 for k, v in params.items())


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
        if not ax.get_visible():
            continue
        top: SubplotSpec = ax.get_subplotspec().get_topmost_subplotspec()
        rows, cols = top.rowspan, top.colspan
        out.setdefault((rows.start, rows.stop - 1, cols.start, cols.stop - 1), []).append(ax)
    return out


# --- solving for the subplot parameters -------------------------------------------------------


@dataclass
class _Solved:
    params: dict[str, float] | None  # None: no room left for the axes at all
    fits: bool  # the axes keep MIN_SHARE of their cells
    spans: list[_Span]


def _solve(fig: Figure, grid: GridSpec, measure: _Measure, edge: float) -> _Solved:
    """Subplot parameters that fit the texts as measured at the current layout."""
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    nrows, ncols = grid.get_geometry()
    outer = _Sides()
    gap_w = gap_h = 0.0
    right_of: dict[int, float] = {}
    left_of: dict[int, float] = {}
    below: dict[int, float] = {}
    above: dict[int, float] = {}
    spans: list[_Span] = []
    for (r0, r1, c0, c1), axes in _cells(fig).items():
        need = _cell_need(fig, axes, measure, spans)
        left_of[c0] = max(left_of.get(c0, 0.0), need.left)
        right_of[c1] = max(right_of.get(c1, 0.0), need.right)
        above[r0] = max(above.get(r0, 0.0), need.top)
        below[r1] = max(below.get(r1, 0.0), need.bottom)
    outer.left = left_of.get(0, 0.0)
    outer.right = right_of.get(ncols - 1, 0.0)
    outer.top = above.get(0, 0.0)
    outer.bottom = below.get(nrows - 1, 0.0)
    for c in range(ncols - 1):
        gap_w = max(gap_w, right_of.get(c, 0.0) + left_of.get(c + 1, 0.0) + GAP_PT)
    for r in range(nrows - 1):
        gap_h = max(gap_h, below.get(r, 0.0) + above.get(r + 1, 0.0) + GAP_PT)
    # The figure's legends and texts lie outside everything the cells take.
    edges, inside = _figure_edges(fig, measure)
    left, right = outer.left + (edges.left or edge), outer.right + (edges.right or edge)
    bottom, top = outer.bottom + (edges.bottom or edge), outer.top + (edges.top or edge)
    cell_w = (wide - left - right - (ncols - 1) * gap_w) / ncols
    cell_h = (high - bottom - top - (nrows - 1) * gap_h) / nrows
    fits = inside and cell_w >= MIN_SHARE * wide / ncols and cell_h >= MIN_SHARE * high / nrows
    if cell_w <= 0 or cell_h <= 0:
        return _Solved(None, fits, spans)
    params = {
        "left": left / wide,
        "right": 1 - right / wide,
        "bottom": bottom / high,
        "top": 1 - top / high,
        "wspace": gap_w / cell_w,
        "hspace": gap_h / cell_h,
    }
    return _Solved(params, fits, spans)


def _cell_need(fig: Figure, axes: list[Axes], measure: _Measure, spans: list[_Span]) -> _Sides:
    """Points the texts of a cell's axes take beyond the cell's edges."""
    spec = axes[0].get_subplotspec().get_topmost_subplotspec()
    cell = spec.get_position(fig)
    to_pt = (fig.get_figwidth() * 72, fig.get_figheight() * 72)
    need = _Sides()
    for ax in axes:
        box = ax.get_position(original=True)
        own = _axes_need(ax, box.width * to_pt[0], box.height * to_pt[1], measure, spans)
        need.grow(
            _Sides(
                own.left - (box.x0 - cell.x0) * to_pt[0],
                own.right - (cell.x1 - box.x1) * to_pt[0],
                own.bottom - (box.y0 - cell.y0) * to_pt[1],
                own.top - (cell.y1 - box.y1) * to_pt[1],
            )
        )
    return need


# --- one axes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Span:
    """A text placed along one side of an axes at ``frac`` of its length (an axis label, a
    title, an offset text), reaching ``low`` to ``high`` points from there. Margins cannot make
    room for one wider than its axes (they make the axes smaller): it must fit in the figure
    as placed, or it is dropped."""

    ax: Axes
    horizontal: bool
    frac: float
    low: float
    high: float


def _within(fig: Figure, spans: list[_Span]) -> bool:
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    for span in spans:
        box = span.ax.get_position(original=True)
        start, length, limit = (
            (box.x0 * wide, box.width * wide, wide)
            if span.horizontal
            else (box.y0 * high, box.height * high, high)
        )
        at = start + span.frac * length
        if at + span.low < 0 or at + span.high > limit:
            return False
    return True


def _axes_need(
    ax: Axes, width: float, height: float, measure: _Measure, spans: list[_Span]
) -> _Sides:
    """Points the texts of one axes take beyond its box of ``width`` x ``height`` points."""
    need = _Sides(_SPINE_PT, _SPINE_PT, _SPINE_PT, _SPINE_PT)
    x = _axis_need(ax.xaxis, width, measure, spans)
    y = _axis_need(ax.yaxis, height, measure, spans)
    # The x axis' sides are below and above the axes; its labels run along the width.
    need.grow(_Sides(x.along_low, x.along_high, x.low, x.high))
    need.grow(_Sides(y.low, y.high, y.along_low, y.along_high))
    titles = [t for t in _titles(ax) if t.get_visible() and t.get_text()]
    if titles:
        # Titles sit above the top tick labels (if any) by their pad; one that would meet
        # the y axis' offset text is moved above it.
        pad = ax.titleOffsetTrans.get_matrix()[1, 2] * 72 / ax.figure.dpi
        above = max(x.high, y.offset_top)
        for title in titles:
            x0, y0, x1, y1 = measure.box(title, title.get_text())
            need.top = max(need.top, above + pad + y1, x.high + y.offset_top + (y1 - y0))
            spans.append(_Span(ax, True, title.get_position()[0], x0, x1))
    return need


def _titles(ax: Axes) -> list[Text]:
    """The centre, left and right titles: the texts of the axes that are not ``ax.texts``."""
    own = {id(t) for t in ax.texts}
    return [c for c in ax.get_children() if type(c) is Text and id(c) not in own]


@dataclass
class _AxisNeed:
    low: float = 0.0  # below an x axis, left of a y axis
    high: float = 0.0  # above an x axis, right of a y axis
    along_low: float = 0.0  # past the axis' start (left end of x, bottom of y)
    along_high: float = 0.0
    offset_top: float = 0.0  # a y axis' offset text above the axes


def _axis_need(axis: Axis, length: float, measure: _Measure, spans: list[_Span]) -> _AxisNeed:
    """What an axis' texts take; ``length`` is the axes' size along the axis."""
    need = _AxisNeed()
    horizontal = isinstance(axis, XAxis)
    ax = axis.axes
    labels = {True: 0.0, False: 0.0}  # first side (bottom, left) or not -> points taken
    offsets = {True: 0.0, False: 0.0}
    for which, fracs, texts in _ticks(axis):
        tick = axis.get_major_ticks(1)[0] if which == "major" else axis.get_minor_ticks(1)[0]
        out = tick.get_tick_padding()
        pad = out + tick.get_pad()
        sides = ((True, tick.tick1line, tick.label1), (False, tick.tick2line, tick.label2))
        for first, line, label in sides:
            if line.get_visible():
                labels[first] = max(labels[first], out)
            if not label.get_visible():
                continue
            for frac, text in zip(fracs, texts, strict=True):
                if not text:
                    continue
                x0, y0, x1, y1 = measure.box(label, text)
                depth = (-y0 if first else y1) if horizontal else (-x0 if first else x1)
                labels[first] = max(labels[first], pad + depth)
                start, end = (x0, x1) if horizontal else (y0, y1)
                need.along_low = max(need.along_low, -(frac * length + start))
                need.along_high = max(need.along_high, frac * length + end - length)
    offset = axis.get_offset_text()
    text = offset.get_text() if offset.get_visible() else ""
    if text:
        # Aligned to an end of the axes, across (x) or above (y) the tick labels.
        x0, y0, x1, y1 = measure.box(offset, text)
        spans.append(_Span(ax, True, offset.get_position()[0], x0, x1))
        if horizontal:
            bottom = axis.get_ticks_position() != "top"
            offsets[bottom] = labels[bottom] + _OFFSET_PAD_PT + (y1 - y0)
        else:
            need.offset_top = _OFFSET_PAD_PT + (y1 - y0)
            need.along_high = max(need.along_high, need.offset_top)
    label = axis.label
    if label.get_visible() and label.get_text():
        first = axis.get_label_position() in ("bottom", "left")
        x0, y0, x1, y1 = measure.box(label, label.get_text())
        depth = (y1 - y0) if horizontal else (x1 - x0)
        labels[first] = max(labels[first], _SPINE_PT) + axis.labelpad + depth
        frac = label.get_position()[0 if horizontal else 1]
        spans.append(_Span(ax, horizontal, frac, *((x0, x1) if horizontal else (y0, y1))))
    need.low = max(labels[True], offsets[True])
    need.high = max(labels[False], offsets[False])
    return need


def _ticks(axis: Axis) -> Iterator[tuple[str, list[float], list[str]]]:
    """The tick labels an axis will draw, as it will draw them: positions along the axis as a
    share of its length, and texts, for the major and then the minor ticks."""
    # From the start of the axis (its left or bottom end), which an inverted axis begins
    # with its greater value.
    scale = axis.get_transform()
    t_start, t_end = scale.transform(list(axis.get_view_interval()))
    t_low, t_high = sorted((t_start, t_end))
    span = t_high - t_low
    for which, formatter in (
        ("major", axis.get_major_formatter()),
        ("minor", axis.get_minor_formatter()),
    ):
        locs = list(axis.get_majorticklocs() if which == "major" else axis.get_minorticklocs())
        if not locs:
            continue
        texts = formatter.format_ticks(locs)
        if which == "major":
            axis.get_offset_text().set_text(formatter.get_offset())
        shown, fracs = [], []
        for loc, text in zip(locs, texts, strict=True):
            t = scale.transform([loc])[0]
            if span > 0 and t_low - 1e-10 * span <= t <= t_high + 1e-10 * span:
                shown.append(text)
                fracs.append((t - t_start) / (t_end - t_start))
        if shown:
            yield which, fracs, shown


# --- the figure's own texts and legends ----------------------------------------------------------


def _figure_edges(fig: Figure, measure: _Measure) -> tuple[_Sides, bool]:
    """Points taken at the figure's edges by its legends and texts (suptitle, supxlabel, ...),
    and whether they all lie within the figure."""
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    need = _Sides()
    inside = True
    for artist in _figure_artists(fig):
        x0, y0, x1, y1 = measure.placed(artist)
        inside = inside and x0 >= 0 and y0 >= 0 and x1 <= wide and y1 <= high
        cx, cy = (x0 + x1) / 2 / wide, (y0 + y1) / 2 / high
        # The edge it is nearest to, if it lies in that edge's band.
        sides = {"bottom": cy, "top": 1 - cy, "left": cx, "right": 1 - cx}
        side = min(sides, key=sides.__getitem__)
        if sides[side] > _EDGE_BAND:
            continue
        depth = {"bottom": y1, "top": high - y0, "left": x1, "right": wide - x0}[side]
        setattr(need, side, max(getattr(need, side), depth + GAP_PT / 2))
    return need, inside


def _figure_artists(fig: Figure) -> Iterator[Text | Legend]:
    for text in fig.texts:
        if text.get_visible() and text.get_text():
            yield text
    for legend in fig.legends:
        if legend.get_visible():
            yield legend


# --- dropping what does not fit, and undoing it --------------------------------------------------


def _drop_order(fig: Figure) -> list:
    """Steps that each hide one kind of text, in the order they are taken."""

    def hide(artists: Iterable[Text | Legend]):
        def step(dropped: _Dropped) -> None:
            for artist in artists:
                if artist.get_visible():
                    artist.set_visible(False)
                    dropped.artists.append(artist)

        return step

    def hide_tick_labels(dropped: _Dropped) -> None:
        for ax in fig.axes:
            for axis, sides in ((ax.xaxis, ("bottom", "top")), (ax.yaxis, ("left", "right"))):
                tick = axis.get_major_ticks(1)[0]
                for side, label in zip(sides, (tick.label1, tick.label2), strict=True):
                    if label.get_visible():
                        axis.set_tick_params(which="both", **{f"label{side}": False})
                        dropped.tick_labels.append((axis, side))
                if axis.get_offset_text().get_visible():
                    axis.get_offset_text().set_visible(False)
                    dropped.artists.append(axis.get_offset_text())

    legends = list(fig.legends)
    axis_labels = [a.label for ax in fig.axes for a in (ax.xaxis, ax.yaxis)]
    titles = [t for ax in fig.axes for t in _titles(ax)] + list(fig.texts)
    return [hide(legends), hide(axis_labels), hide(titles), hide_tick_labels]


def _restore(fig: Figure) -> None:
    dropped = _dropped.pop(fig, None)
    if dropped is None:
        return
    for artist in dropped.artists:
        artist.set_visible(True)
    for axis, side in dropped.tick_labels:
        axis.set_tick_params(which="both", **{f"label{side}": True})


# --- measuring text -------------------------------------------------------------------------------


class _Measure:
    """Sizes of texts at one dpi, from the Agg renderer's font machinery; one per thread."""

    def __init__(self, dpi: float) -> None:
        self.dpi = dpi
        self.renderer = RendererAgg(1, 1, dpi)
        self.figure = Figure(dpi=dpi)
        self.scratch = Text(0, 0, "")
        self.scratch.set_figure(self.figure)

    def box(self, like: Text, text: str) -> tuple[float, float, float, float]:
        """Where ``text``, drawn as ``like`` is (font, rotation, alignment), lies around its
        anchor point: (x0, y0, x1, y1) in points."""
        font = like.get_fontproperties()
        key = (
            text,
            font.get_family()[0] if font.get_family() else "",
            font.get_style(),
            font.get_variant(),
            font.get_weight(),
            font.get_stretch(),
            font.get_size_in_points(),
            font.get_math_fontfamily(),
            font.get_file(),
            like.get_rotation(),
            like.get_rotation_mode(),
            like.get_horizontalalignment(),
            like.get_verticalalignment(),
            like.get_linespacing(),
            like.get_usetex(),
            like.get_parse_math(),
            self.dpi,
        )
        with _boxes_lock:
            known = _boxes.get(key)
            if known is not None:
                _boxes.move_to_end(key)
                return known
        scratch = self.scratch
        scratch.update_from(like)
        scratch.set_rotation_mode(like.get_rotation_mode())
        scratch.set_parse_math(like.get_parse_math())
        scratch.set_transform(IdentityTransform())
        scratch.set_position((0, 0))
        scratch.set_text(text)
        scratch.set_visible(True)
        bbox = scratch.get_window_extent(self.renderer)
        points = 72 / self.dpi
        box = (bbox.x0 * points, bbox.y0 * points, bbox.x1 * points, bbox.y1 * points)
        with _boxes_lock:
            _boxes[key] = box
            while len(_boxes) > _CACHE_SIZE:
                _boxes.popitem(last=False)
        return box

    def placed(self, artist: Text | Legend) -> tuple[float, float, float, float]:
        """Where a figure's text or legend lies in the figure, in points from its lower left."""
        bbox = artist.get_window_extent(self.renderer)
        points = 72 / self.dpi
        return (bbox.x0 * points, bbox.y0 * points, bbox.x1 * points, bbox.y1 * points)


def text_width(fig: Figure, text: str, size: float | str = "medium") -> float:
    """How wide ``text`` is drawn in ``fig`` at font ``size``, in points, without drawing."""
    x0, _, x1, _ = _measurer(fig.dpi).box(Text(text=text, fontsize=size), text)
    return x1 - x0


def _measurer(dpi: float) -> _Measure:
    cache: dict[float, _Measure] = getattr(_local, "measures", None) or {}
    _local.measures = cache
    measure = cache.get(dpi)
    if measure is None:
        if len(cache) >= 8:
            cache.pop(next(iter(cache)))
        measure = cache[dpi] = _Measure(dpi)
    return measure
