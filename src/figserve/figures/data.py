"""Plots of user-uploaded tables: parsing CSV/NPY into columns, and drawing them.

Parsing is strict and every error names where it is (line, column), so a person can fix the file.
What a table may ask of a drawing (labels, points, bins) is bounded and checked before anything
is drawn; past a limit the upload is refused with the column and the limit named.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
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

Kind = Literal["line", "scatter", "bar", "hist"]
MAX_COLUMN_NAME = 64
# Largest magnitude of an uploaded number. Axis code adds margins to ranges, divides them into
# ticks and scales them to pixels (up to about 1e4); near the float maximum (1.8e308) any of
# these overflows. 1e300 leaves eight orders of magnitude of headroom.
MAX_MAGNITUDE = 1e300
_NPY_DIMENSIONS = 2
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


class DataError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Table:
    # Numeric columns as float; text columns as object arrays of str (a fixed-width string
    # array would take rows x longest cell of memory).
    columns: dict[str, np.ndarray]
    # The file line of each row (CSV), so messages can point at it; None: rows are counted.
    lines: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))

    def where(self, row: int) -> str:
        if self.lines is not None:
            return f"line {int(self.lines[row])}"
        return f"row {row + 1}"


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


def parse_table(filename: str, data: bytes, max_rows: int, max_columns: int) -> Table:
    if filename.lower().endswith(".npy") or data[:6] == b"\x93NUMPY":
        return _parse_npy(data, max_rows, max_columns)
    return _parse_csv(data, max_rows, max_columns)


def _check_name(name: str, where: str) -> None:
    if len(name) > MAX_COLUMN_NAME:
        raise DataError("file", f"{where}: column names are limited to {MAX_COLUMN_NAME} chars")
    problem = text_problem(name)
    if problem:
        raise DataError("file", f"{where}: column name {problem}")


def _check_numbers(name: str, values: np.ndarray, shown: Sequence[str], table: Table) -> None:
    """Finite and within ``MAX_MAGNITUDE``; ``shown[i]`` is how row i reads in the file."""
    finite = np.isfinite(values)
    if not finite.all():
        bad = int(np.argmin(finite))
        raise DataError("file", f"{table.where(bad)}, column {name!r}: {shown[bad]} is not finite")
    big = np.abs(values) > MAX_MAGNITUDE
    if big.any():
        bad = int(np.argmax(big))
        raise DataError(
            "file",
            f"{table.where(bad)}, column {name!r}: {shown[bad]} is too large "
            f"(numbers are limited to ±{MAX_MAGNITUDE:g})",
        )


def _parse_csv(data: bytes, max_rows: int, max_columns: int) -> Table:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError("file", f"line {line}: not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise DataError("file", "line 1: expected a header row of column names")
        header = [h.strip() for h in header]
        if len(header) > max_columns:
            raise DataError("file", f"line 1: {len(header)} columns, the limit is {max_columns}")
        if len(set(header)) != len(header) or "" in header:
            raise DataError("file", "line 1: column names must be unique and not empty")
        for j, name in enumerate(header):
            _check_name(name, f"line 1, column {j + 1}")
        rows: list[list[str]] = []
        lines: list[int] = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    "file",
                    f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}",
                )
            rows.append(row)
            lines.append(reader.line_num)
            if len(rows) > max_rows:
                raise DataError("file", f"more than {max_rows:,} data rows")
    except csv.Error as exc:
        raise DataError("file", f"line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError("file", "no data rows after the header")
    table = Table({}, np.array(lines))
    for j, name in enumerate(header):
        cells = [row[j].strip() for row in rows]
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            table.columns[name] = np.array(cells, dtype=object)
        else:
            _check_numbers(name, values, [repr(c) for c in cells], table)
            table.columns[name] = values
    return table


def _parse_npy(data: bytes, max_rows: int, max_columns: int) -> Table:
    """Read the header first and check it against the limits and the body's length, so a
    small file cannot make the server allocate what its header claims."""
    fmt = np.lib.format
    stream = io.BytesIO(data)
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise DataError(
                "file", f".npy format version {version[0]}.{version[1]} is not supported"
            )
    except DataError:
        raise
    except Exception as exc:
        # numpy evaluates the header as a Python literal: besides ValueError, a malformed one
        # raises tokenizer, syntax and recursion errors. All mean the same to the uploader.
        raise DataError("file", f"not a readable .npy file ({_short(str(exc))})") from None
    body = memoryview(data)[stream.tell() :]
    if any(size < 0 for size in shape):
        raise DataError("file", f"not a readable .npy file (shape {_short(str(shape))})")
    if dtype.names:  # structured array: named columns
        names = list(dtype.names)
        if len(shape) != 1:
            raise DataError("file", f"expected a 1-D array of records, got {len(shape)}-D")
        for name in names:
            field = dtype.fields[name][0]
            if not _real_numbers(field):
                raise DataError("file", f"column {name!r} is not a real number column")
            _check_name(name, "the .npy header")
        n_rows, n_columns = shape[0], len(names)
    else:
        if not _real_numbers(dtype):
            raise DataError("file", f"the array holds {dtype}, not real numbers")
        if len(shape) not in (1, _NPY_DIMENSIONS):
            raise DataError("file", f"expected a 1-D or 2-D array, got {len(shape)}-D")
        n_rows, n_columns = shape[0], (shape[1] if len(shape) == _NPY_DIMENSIONS else 1)
    if n_columns > max_columns:
        raise DataError("file", f"{n_columns:,} columns, the limit is {max_columns}")
    if n_rows > max_rows:
        raise DataError("file", f"{n_rows:,} rows, the limit is {max_rows:,}")
    if n_rows == 0 or n_columns == 0:
        raise DataError("file", "the array is empty")
    count = math.prod(shape)
    if count * dtype.itemsize != len(body):
        raise DataError(
            "file",
            f"the .npy header describes {count * dtype.itemsize:,} bytes of data, "
            f"the file holds {len(body):,}",
        )
    array = np.frombuffer(body, dtype=dtype, count=count).reshape(
        shape, order="F" if fortran_order else "C"
    )
    if dtype.names:
        raw = {name: array[name] for name in dtype.names}
    else:
        matrix = array.reshape(n_rows, n_columns)
        raw = {str(j): matrix[:, j] for j in range(n_columns)}
    table = Table({})
    for name, col in raw.items():
        with np.errstate(over="ignore", invalid="ignore"):  # checked just below
            values = col.astype(float)
        _check_numbers(name, values, _Shown(col), table)
        table.columns[name] = values
    return table


class _Shown:
    """Values of a column as a message shows them, made only for the one a message needs."""

    def __init__(self, column: np.ndarray) -> None:
        self._column = column

    def __getitem__(self, row: int) -> str:
        return str(self._column[row])


def _real_numbers(dtype: np.dtype) -> bool:
    return dtype.kind in "iuf" and dtype.shape == ()


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
