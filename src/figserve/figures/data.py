"""Plots of user-uploaded tables (parsed in ``tables.py``): columns chosen, checked, drawn.

What a table may ask of a drawing (labels, points, bins) is bounded and checked before anything
is drawn; past a limit the upload is refused with the column and the limit named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator
from pydantic import Field

from .registry import FigureParams, text_problem, title_field
from .tables import MAX_COLUMN_NAME, DataError, Table

Kind = Literal["line", "scatter", "bar", "hist"]
_COLORS = rcParams["axes.prop_cycle"].by_key()["color"]


@dataclass(frozen=True)
class Limits:
    """What one uploaded table may ask of a drawing.

    Chosen so that the largest table these allow draws in well under a second at 640x400, in
    every format (vector formats write every point and bar).
    """

    # Distinct text labels on a category axis (line and scatter with a text x column): each
    # costs about 25 microseconds to map and place, and a category axis of thousands is no
    # longer one a person reads (daily dates as text for five years still fit).
    labels: int = 2_000
    # Characters of one text cell drawn as a label.
    label_chars: int = 40
    # Up to this many category or bar labels each get a tick; more are thinned by a locator,
    # so a tick count never grows with the data.
    tick_labels: int = 30
    # Points per kind, summed over the series of a plot (one series may use them all; eight
    # series at a per-series limit would cost eight times as much). The slowest cases set
    # them: a zigzag line crossing the plot costs about 16 microseconds a point in PNG, a
    # scatter point about 20 and a bar about 85 in SVG.
    line_points: int = 20_000
    scatter_points: int = 10_000
    bar_points: int = 4_000
    # np.histogram is linear and cheap; this only caps what the row limit allows.
    hist_points: int = 1_000_000
    # Histogram bins: numpy's "auto" rule, capped (outliers make it ask for millions).
    bins: int = 100

    def points(self, kind: Kind) -> int:
        return {
            "line": self.line_points,
            "scatter": self.scatter_points,
            "bar": self.bar_points,
            "hist": self.hist_points,
        }[kind]


LIMITS = Limits()


class PlotParams(FigureParams):
    kind: Kind = Field("line", description="line, scatter, bar or hist.")
    x: str | None = Field(
        None, max_length=MAX_COLUMN_NAME, description="Column for the x axis (default: the first)."
    )
    y: str | None = Field(
        None,
        max_length=200,  # as any text value of a form
        description="Column(s) for y, comma-separated (default: the second); not used by hist.",
    )
    title: str = title_field()


def resolve_columns(
    table: Table, p: PlotParams, limits: Limits = LIMITS
) -> tuple[str | None, list[str]]:
    """Column names for x and y, checked against the table and the limits; None for x means
    the row index. Everything a drawing could explode on is refused here, before drawing."""
    names = list(table.columns)

    def check(name: str, param: str) -> str:
        if name not in table.columns:
            raise DataError(param, f"no column {name!r}; the columns are {', '.join(names)}")
        return name

    if p.kind == "hist":
        if p.y:
            raise DataError("y", "hist draws the distribution of x; leave y empty")
        x = check(p.x, "x") if p.x else names[0]
        if table.columns[x].dtype.kind not in "fiu":
            raise DataError("x", f"column {x!r} is not numeric")
        _check_points(table, "hist", [x], "x", limits)
        return x, []
    if p.y:
        ys = [check(name.strip(), "y") for name in p.y.split(",") if name.strip()]
        if not ys or len(ys) > 8:
            raise DataError("y", "name between 1 and 8 columns")
        x = check(p.x, "x") if p.x else (names[0] if names[0] not in ys else None)
    elif len(names) == 1:
        x, ys = (check(p.x, "x") if p.x else None), [names[0]]
    else:
        x = check(p.x, "x") if p.x else names[0]
        ys = [n for n in names if n != x][:1]
    for y in ys:
        if table.columns[y].dtype.kind not in "fiu":
            raise DataError("y", f"column {y!r} is not numeric")
    _check_points(table, p.kind, ys, "y", limits)
    if x is not None and table.columns[x].dtype == object:
        _check_labels(table, x, distinct=p.kind != "bar", limits=limits)
    return x, ys


def _check_points(table: Table, kind: Kind, columns: list[str], param: str, limits: Limits) -> None:
    cap, total = limits.points(kind), table.rows * len(columns)
    if total <= cap:
        return
    if len(columns) == 1:
        raise DataError(
            param, f"column {columns[0]!r}: {total:,} points, the limit for {kind} is {cap:,}"
        )
    names = ", ".join(repr(c) for c in columns)
    raise DataError(
        param,
        f"columns {names}: {len(columns)} series of {table.rows:,} points, {total:,} in all; "
        f"the limit for {kind} is {cap:,} in all",
    )


def _check_labels(table: Table, column: str, *, distinct: bool, limits: Limits) -> None:
    """Text cells drawn as tick labels: few enough distinct ones, each short and drawable.

    Runs after the point limits, so there are at most as many distinct cells as a drawing of
    this kind may have points."""
    cells: list[str] = table.columns[column].tolist()
    distinct_cells = dict.fromkeys(cells)  # in order of first appearance
    if distinct and len(distinct_cells) > limits.labels:
        raise DataError(
            "x",
            f"column {column!r}: {len(distinct_cells):,} distinct labels, "
            f"the limit is {limits.labels:,}",
        )
    for cell in distinct_cells:
        problem = text_problem(cell)
        if len(cell) > limits.label_chars:
            problem = f"a label of {len(cell):,} characters, the limit is {limits.label_chars:,}"
        if problem:
            where = table.where(cells.index(cell))
            raise DataError("x", f"column {column!r}, {where}: {problem}")


def auto_bins(values: np.ndarray, cap: int) -> int:
    """numpy's "auto" bin count (the smaller width of Freedman-Diaconis and Sturges), capped.

    Computed from the widths instead of asking numpy for the edges, which it would allocate:
    a few outliers make the Freedman-Diaconis width tiny against the range.
    """
    span = float(values.max()) - float(values.min())
    if span <= 0:
        return 1
    sturges = math.log2(values.size) + 1  # bins of Sturges' width: span / (log2(n) + 1)
    q75, q25 = np.percentile(values, [75, 25])
    fd_width = 2 * float(q75 - q25) * values.size ** (-1 / 3)
    fd = span / fd_width if fd_width > 0 else 0.0  # inf when the width underflows
    count = max(sturges, fd)  # numpy takes the smaller width
    return cap if count >= cap else max(1, math.ceil(count))


def bin_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """``bins`` equal bins over the values' range, widened where floats cannot split it.

    numpy refuses ranges too narrow for finite-sized bins (values that differ only in their last
    digits); such a range is widened around its centre to the narrowest one floats can split.
    """
    lo, hi = float(values.min()), float(values.max())
    least = bins * 16 * float(np.spacing(max(abs(lo), abs(hi))))
    if hi - lo >= least and hi > lo:
        return np.linspace(lo, hi, bins + 1)
    centre = lo / 2 + hi / 2
    half = max(least, 0.5) if hi == lo else least
    return np.linspace(centre - half, centre + half, bins + 1)


def _math_free(label: str) -> str:
    # Tick labels are parsed as math when they hold "$": escape it so user text never is.
    return label.replace("$", r"\$")


def _number_label(value: float) -> str:
    return f"{value:g}"


def draw_table(fig: Figure, table: Table, p: PlotParams, limits: Limits = LIMITS) -> None:
    x_name, y_names = resolve_columns(table, p, limits)
    # No layout engine: the renderer fits the margins to the texts without a second draw.
    ax = fig.add_subplot()
    xs = table.columns[x_name] if x_name else np.arange(table.rows, dtype=float)
    if p.kind == "hist":
        edges = bin_edges(xs, auto_bins(xs, limits.bins))
        ax.hist(xs, bins=edges, histtype="stepfilled", color="#4c72b0", alpha=0.8)
        ax.set_xlabel(x_name or "", parse_math=False)
        ax.set_ylabel("count")
    else:
        text_x = xs.dtype == object
        labels = [_math_free(v) for v in xs] if text_x else None
        width = 0.8 / len(y_names)
        for i, name in enumerate(y_names):
            ys = table.columns[name]
            if p.kind == "line":
                ax.plot(labels if text_x else xs, ys, label=name)
            elif p.kind == "scatter":
                ax.scatter(labels if text_x else xs, ys, s=12, alpha=0.7, label=name)
            else:
                positions = np.arange(table.rows) + (i - (len(y_names) - 1) / 2) * width
                _bars(ax, positions, ys, width, _COLORS[i % len(_COLORS)], name)
        if p.kind == "bar":
            _label_rows(ax, labels or [_number_label(v) for v in xs], limits)
        elif text_x and len(set(labels)) > limits.tick_labels:
            # A category axis ticks every label; past the limit, a few evenly spaced ones.
            ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))
        ax.set_xlabel(x_name or "row", parse_math=False)
        if len(y_names) > 1:
            # As many columns as fit across (a small-font character is about 5 points wide).
            longest = max(len(name) for name in y_names)
            fits = int(fig.get_figwidth() * 72 // (5 * longest + 30))
            legend = fig.legend(
                loc="outside lower center",
                ncols=max(1, min(4, len(y_names), fits)),
                fontsize="small",
                frameon=False,
            )

            for text in legend.get_texts():
                text.set_parse_math(False)
        else:
            ax.set_ylabel(y_names[0], parse_math=False)
    if p.title:
        ax.set_title(p.title, parse_math=False)


def _bars(
    ax: Axes, positions: np.ndarray, heights: np.ndarray, width: float, color: str, label: str
) -> None:
    """Bars as one collection: what ``Axes.bar`` draws, without an artist per bar (each costs
    about a millisecond to lay out and draw)."""
    left, right = positions - width / 2, positions + width / 2
    base = np.zeros_like(heights)
    corners = [(left, base), (left, heights), (right, heights), (right, base)]
    verts = np.stack([np.column_stack(corner) for corner in corners], axis=1)
    bars = PolyCollection(verts, facecolors=color, edgecolors="none", linewidths=0, label=label)
    bars.sticky_edges.y.append(0)  # like Axes.bar: no margin below the baseline
    ax.add_collection(bars)
    ax.autoscale_view()


def _label_rows(ax: Axes, labels: list[str], limits: Limits) -> None:
    """Bars stand at 0..n-1: label each, or past the limit a few evenly spaced ones."""
    if len(labels) <= limits.tick_labels:
        ax.xaxis.set_major_locator(FixedLocator(np.arange(len(labels))))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True))

    def label(value: float, _pos: int | None) -> str:
        row = round(value)
        return labels[row] if 0 <= row < len(labels) and row == value else ""

    ax.xaxis.set_major_formatter(FuncFormatter(label))
