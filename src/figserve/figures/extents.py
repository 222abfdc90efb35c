"""How far a figure's texts reach beyond its axes, measured without drawing (for ``layout``).

Texts are measured with the font machinery of the Agg renderer (a renderer of one pixel, kept
per thread and dpi), and their sizes are kept per process: a tick label seen before costs a
dictionary lookup. Where a text sits follows matplotlib's own rules: tick labels a tick length
and a pad from the spine, axis labels a label pad beyond the tick labels, offset texts at the
axes' ends, titles a pad above the top.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis, XAxis
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import IdentityTransform

SPINE_PT = 1.0  # half a spine's width, rounded up
OFFSET_PAD_PT = 3.0  # matplotlib's gap between tick labels and an axis' offset text
_CACHE_SIZE = 8192
_MEASURES_PER_THREAD = 8  # dpis

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in points


@dataclass
class Sides:
    """Points taken beyond a box's left, right, bottom and top edges."""

    left: float = 0.0
    right: float = 0.0
    bottom: float = 0.0
    top: float = 0.0

    def grow(self, other: Sides) -> None:
        self.left = max(self.left, other.left)
        self.right = max(self.right, other.right)
        self.bottom = max(self.bottom, other.bottom)
        self.top = max(self.top, other.top)


@dataclass(frozen=True)
class Span:
    """A text placed along one side of an axes at ``frac`` of its length (an axis label, a
    title, an offset text), reaching ``low`` to ``high`` points from there. Margins cannot make
    room for one wider than its axes (they make the axes smaller): it must fit in the figure
    as placed."""

    ax: Axes
    horizontal: bool
    frac: float
    low: float
    high: float


@dataclass(frozen=True)
class Ticks:
    """What an axis' locator and formatter gave for its view at the axes' size in pixels: the
    major ticks within the view (those drawn), their labels and the offset text."""

    view: tuple[float, float]
    size: tuple[float, float]
    locs: tuple[float, ...]
    labels: tuple[str, ...]
    offset: str


def ticks_key(axis: Axis) -> tuple[tuple[float, float], tuple[float, float]]:
    """What an axis' ticks depend on besides its locator and formatter."""
    view = axis.get_view_interval()
    box = axis.axes.bbox
    return (float(view[0]), float(view[1])), (float(box.width), float(box.height))


@dataclass
class Measured:
    """What one measuring pass found besides the room taken at the sides."""

    spans: list[Span] = field(default_factory=list)
    ticks: dict[Axis, Ticks] = field(default_factory=dict)


@dataclass
class AxesNeed:
    """Points one axes' texts take beyond its box (titles apart), and what sets its titles'
    height: its x axis' texts above the top and its y axis' offset text."""

    sides: Sides
    x_above: float
    offset_above: float


def axes_need(ax: Axes, width: float, height: float, measure: Measure, found: Measured) -> AxesNeed:
    """What the texts of one axes (its titles apart) take beyond its box of ``width`` x
    ``height`` points."""
    need = Sides(SPINE_PT, SPINE_PT, SPINE_PT, SPINE_PT)
    if not ax.axison:  # set_axis_off(): neither axis is drawn
        return AxesNeed(need, 0.0, 0.0)
    x = _axis_need(ax.xaxis, width, measure, found)
    y = _axis_need(ax.yaxis, height, measure, found)
    # The x axis' sides are below and above the axes; its labels run along the width.
    need.grow(Sides(x.along_low, x.along_high, x.low, x.high))
    need.grow(Sides(y.low, y.high, y.along_low, y.along_high))
    return AxesNeed(need, x.high, y.offset_top)


def titles_need(
    ax: Axes, x_above: float, offset_above: float, measure: Measure, found: Measured
) -> float:
    """Points an axes' titles take above it: they sit their pad above the x axis' texts there
    (of the axes and its twins), and above the y axes' offset texts when they would meet."""
    top = 0.0
    titles = [t for t in titles_of(ax) if t.get_visible() and t.get_text()]
    if titles:
        pad = ax.titleOffsetTrans.get_matrix()[1, 2] * 72 / ax.figure.dpi
        for title in titles:
            x0, y0, x1, y1 = measure.box(title, title.get_text())
            base = max(x_above, offset_above)
            top = max(top, base + pad + y1, x_above + offset_above + (y1 - y0))
            found.spans.append(Span(ax, True, title.get_position()[0], x0, x1))
    return top


def titles_of(ax: Axes) -> list[Text]:
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


def _axis_need(axis: Axis, length: float, measure: Measure, found: Measured) -> _AxisNeed:
    """What an axis' texts take; ``length`` is the axes' size along the axis."""
    need = _AxisNeed()
    if not axis.get_visible():
        return need  # not drawn (the shared axis of a twin)
    horizontal = isinstance(axis, XAxis)
    taken = {True: 0.0, False: 0.0}  # first side (bottom, left) or not -> points taken
    offsets = {True: 0.0, False: 0.0}
    for which, fracs, texts in _ticks(axis, found):
        tick = axis.get_major_ticks(1)[0] if which == "major" else axis.get_minor_ticks(1)[0]
        out = tick.get_tick_padding()
        pad = out + tick.get_pad()
        sides = ((True, tick.tick1line, tick.label1), (False, tick.tick2line, tick.label2))
        for first, line, label in sides:
            if line.get_visible():
                taken[first] = max(taken[first], out)
            if not label.get_visible():
                continue
            for frac, text in zip(fracs, texts, strict=True):
                if not text:
                    continue
                x0, y0, x1, y1 = measure.box(label, text)
                depth = (-y0 if first else y1) if horizontal else (-x0 if first else x1)
                taken[first] = max(taken[first], pad + depth)
                start, end = (x0, x1) if horizontal else (y0, y1)
                need.along_low = max(need.along_low, -(frac * length + start))
                need.along_high = max(need.along_high, frac * length + end - length)
    offset = axis.get_offset_text()
    text = offset.get_text() if offset.get_visible() else ""
    if text:
        # At an end of the axes, below (x) or above (y) the tick labels.
        x0, y0, x1, y1 = measure.box(offset, text)
        found.spans.append(Span(axis.axes, True, offset.get_position()[0], x0, x1))
        if horizontal:
            bottom = axis.get_ticks_position() != "top"
            offsets[bottom] = taken[bottom] + OFFSET_PAD_PT + (y1 - y0)
        else:
            need.offset_top = OFFSET_PAD_PT + (y1 - y0)
            need.along_high = max(need.along_high, need.offset_top)
    label = axis.label
    if label.get_visible() and label.get_text():
        first = axis.get_label_position() in ("bottom", "left")
        x0, y0, x1, y1 = measure.box(label, label.get_text())
        depth = (y1 - y0) if horizontal else (x1 - x0)
        taken[first] = max(taken[first], SPINE_PT) + axis.labelpad + depth
        frac = label.get_position()[0 if horizontal else 1]
        low, high = (x0, x1) if horizontal else (y0, y1)
        found.spans.append(Span(axis.axes, horizontal, frac, low, high))
    need.low = max(taken[True], offsets[True])
    need.high = max(taken[False], offsets[False])
    return need


def _ticks(axis: Axis, found: Measured) -> Iterator[tuple[str, list[float], list[str]]]:
    """The tick labels an axis will draw, as it will draw them: positions along the axis as a
    share of its length from its start, and texts, for the major and then the minor ticks."""
    scale = axis.get_transform()
    # An inverted axis starts (left or bottom) with its greater value.
    t_start, t_end = scale.transform(list(axis.get_view_interval()))
    t_low, t_high = sorted((t_start, t_end))
    span = t_high - t_low
    for which in ("major", "minor"):
        major = which == "major"
        if major:
            locs = list(axis.get_majorticklocs())
        else:
            # Most axes have no minor ticks: ask their locator before the axis, which would
            # ask the major locator again to leave out minor ticks at major ones.
            locs = list(axis.get_minorticklocs()) if len(axis.get_minor_locator()()) else []
        formatter = axis.get_major_formatter() if major else axis.get_minor_formatter()
        texts = formatter.format_ticks(locs) if locs else []
        offset = formatter.get_offset() if major else ""
        if major:
            axis.get_offset_text().set_text(offset)
        inside, shown, fracs = [], [], []
        places = scale.transform(np.asarray(locs, dtype=float)) if locs else []
        for loc, t, text in zip(locs, places, texts, strict=True):
            # Within the view as matplotlib decides which ticks to draw.
            if span > 0 and t_low - 1e-10 * span <= t <= t_high + 1e-10 * span:
                inside.append(float(loc))
                shown.append(text)
                fracs.append(float((t - t_start) / (t_end - t_start)))
        if major:
            view, size = ticks_key(axis)
            found.ticks[axis] = Ticks(view, size, tuple(inside), tuple(shown), offset)
        if shown:
            yield which, fracs, shown


def figure_edges(fig: Figure, measure: Measure) -> tuple[Sides, bool]:
    """Points taken at the figure's edges by its legends and texts (suptitle, supxlabel, ...),
    each counted at the edge it lies nearest (within a quarter of the figure), and whether
    they all lie within the figure."""
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    need = Sides()
    inside = True
    for artist in figure_artists(fig):
        x0, y0, x1, y1 = measure.placed(artist)
        inside = inside and x0 >= 0 and y0 >= 0 and x1 <= wide and y1 <= high
        cx, cy = (x0 + x1) / 2 / wide, (y0 + y1) / 2 / high
        sides = {"bottom": cy, "top": 1 - cy, "left": cx, "right": 1 - cx}
        side = min(sides, key=sides.__getitem__)
        if sides[side] > 0.25:
            continue
        depth = {"bottom": y1, "top": high - y0, "left": x1, "right": wide - x0}[side]
        setattr(need, side, max(getattr(need, side), depth))
    return need, inside


def figure_artists(fig: Figure) -> Iterator[Text | Legend]:
    for text in fig.texts:
        if text.get_visible() and text.get_text():
            yield text
    for legend in fig.legends:
        if legend.get_visible():
            yield legend


# --- measuring text -------------------------------------------------------------------------------

_local = threading.local()
_boxes: OrderedDict[tuple[object, ...], Box] = OrderedDict()
_boxes_lock = threading.Lock()


class Measure:
    """Sizes of texts at one dpi; one per thread and dpi (see ``measure_for``)."""

    def __init__(self, dpi: float) -> None:
        self.dpi = dpi
        self.renderer = RendererAgg(1, 1, dpi)
        self.scratch = Text(0, 0, "")
        self.scratch.set_figure(Figure(dpi=dpi))

    def box(self, like: Text, text: str) -> Box:
        """Where ``text``, drawn as ``like`` is (font, rotation, alignment), lies around its
        anchor point."""
        font = like.get_fontproperties()
        key = (
            text,
            tuple(font.get_family()),
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
        box = self._points(scratch.get_window_extent(self.renderer))
        with _boxes_lock:
            _boxes[key] = box
            while len(_boxes) > _CACHE_SIZE:
                _boxes.popitem(last=False)
        return box

    def placed(self, artist: Text | Legend) -> Box:
        """Where a figure's text or legend lies in the figure, from its lower left corner."""
        return self._points(artist.get_window_extent(self.renderer))

    def _points(self, bbox: object) -> Box:
        scale = 72 / self.dpi
        x0, y0, x1, y1 = bbox.x0, bbox.y0, bbox.x1, bbox.y1  # type: ignore[attr-defined]
        return (x0 * scale, y0 * scale, x1 * scale, y1 * scale)


def measure_for(dpi: float) -> Measure:
    cache: dict[float, Measure] | None = getattr(_local, "measures", None)
    if cache is None:
        cache = _local.measures = {}
    measure = cache.get(dpi)
    if measure is None:
        if len(cache) >= _MEASURES_PER_THREAD:
            cache.pop(next(iter(cache)))
        measure = cache[dpi] = Measure(dpi)
    return measure
