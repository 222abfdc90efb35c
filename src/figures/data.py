"""Plots of user-uploaded tables: parsing CSV/NPY into columns, and drawing them.

Parsing is strict and every error names where it is (line, column), so a person can fix the file.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
from matplotlib.figure import Figure
from pydantic import Field

from .registry import FigureParams, title_field

Kind = Literal["line", "scatter", "bar", "hist"]
MAX_COLUMN_NAME = 64


class DataError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Table:
    columns: dict[str, np.ndarray]  # numeric columns as float, others as str

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values())))


class PlotParams(FigureParams):
    kind: Kind = Field("line", description="line, scatter, bar or hist.")
    x: str | None = Field(
        None, max_length=MAX_COLUMN_NAME, description="Column for the x axis (default: the first)."
    )
    y: str | None = Field(
        None,
        max_length=8 * (MAX_COLUMN_NAME + 1),
        description="Column(s) for y, comma-separated (default: the second); not used by hist.",
    )
    title: str = title_field()


def parse_table(filename: str, data: bytes, max_rows: int, max_columns: int) -> Table:
    if filename.lower().endswith(".npy") or data[:6] == b"\x93NUMPY":
        return _parse_npy(data, max_rows, max_columns)
    return _parse_csv(data, max_rows, max_columns)


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
        if any(len(h) > MAX_COLUMN_NAME for h in header):
            raise DataError("file", f"line 1: column names are limited to {MAX_COLUMN_NAME} chars")
        rows: list[list[str]] = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(
                    "file",
                    f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}",
                )
            rows.append(row)
            if len(rows) > max_rows:
                raise DataError("file", f"more than {max_rows:,} data rows")
    except csv.Error as exc:
        raise DataError("file", f"line {reader.line_num}: malformed CSV ({exc})") from None
    if not rows:
        raise DataError("file", "no data rows after the header")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        cells = [row[j].strip() for row in rows]
        try:
            values = np.array([float(c) for c in cells])
        except ValueError:
            values = np.array(cells, dtype=str)
        else:
            if not np.all(np.isfinite(values)):
                bad = int(np.argmin(np.isfinite(values)))
                raise DataError(
                    "file", f"line {bad + 2}, column {name!r}: {cells[bad]!r} is not finite"
                )
        columns[name] = values
    return Table(columns)


def _parse_npy(data: bytes, max_rows: int, max_columns: int) -> Table:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError("file", f"not a readable .npy array ({exc})") from None
    if array.dtype.names:  # structured array: named columns
        names = list(array.dtype.names)
        columns = {n: np.asarray(array[n]) for n in names}
    else:
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise DataError("file", f"expected a 1-D or 2-D array, got {array.ndim}-D")
        columns = {str(j): array[:, j] for j in range(array.shape[1])}
    if len(columns) > max_columns:
        raise DataError("file", f"{len(columns)} columns, the limit is {max_columns}")
    out = {}
    for name, col in columns.items():
        if col.ndim != 1 or not np.issubdtype(col.dtype, np.number) or np.iscomplexobj(col):
            raise DataError("file", f"column {name!r} is not a real number column")
        col = col.astype(float)
        if not np.all(np.isfinite(col)):
            raise DataError("file", f"column {name!r}: contains NaN or infinity")
        out[name] = col
    rows = len(next(iter(out.values()))) if out else 0
    if rows == 0:
        raise DataError("file", "the array is empty")
    if rows > max_rows:
        raise DataError("file", f"{rows:,} rows, the limit is {max_rows:,}")
    return Table(out)


def resolve_columns(table: Table, p: PlotParams) -> tuple[str | None, list[str]]:
    """Column names for x and y, checked against the table; None for x means the row index."""
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
    return x, ys


def draw_table(fig: Figure, table: Table, p: PlotParams) -> None:
    x_name, y_names = resolve_columns(table, p)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    xs = table.columns[x_name] if x_name else np.arange(table.rows)
    if xs.dtype.kind == "U":
        # Category labels become tick labels: escape "$" so mathtext never parses user text.
        xs = np.char.replace(xs, "$", r"\$")
    if p.kind == "hist":
        ax.hist(xs, bins="auto", color="#4c72b0", alpha=0.8)
        ax.set_xlabel(x_name or "", parse_math=False)
        ax.set_ylabel("count")
    else:
        width = 0.8 / len(y_names)
        for i, name in enumerate(y_names):
            ys = table.columns[name]
            if p.kind == "line":
                ax.plot(xs, ys, label=name)
            elif p.kind == "scatter":
                ax.scatter(xs, ys, s=12, alpha=0.7, label=name)
            else:
                positions = np.arange(table.rows) + (i - (len(y_names) - 1) / 2) * width
                ax.bar(positions, ys, width=width, label=name)
        if p.kind == "bar":
            ax.set_xticks(np.arange(table.rows), [str(v) for v in xs] if table.rows <= 40 else [])
        ax.set_xlabel(x_name or "row", parse_math=False)
        if len(y_names) > 1:
            legend = ax.legend(fontsize="small")
            for text in legend.get_texts():
                text.set_parse_math(False)
        else:
            ax.set_ylabel(y_names[0], parse_math=False)
    if p.title:
        ax.set_title(p.title, parse_math=False)
