"""Uploaded tables: CSV and NPY parsed strictly into columns.

Every error names where it is (line, column), so a person can fix the file; a file cannot make
the server allocate more than the row and column limits allow (an NPY header is checked
against the limits and the body's length before anything is read).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .registry import text_problem

MAX_COLUMN_NAME = 64
# Largest magnitude of an uploaded number. Axis code adds margins to ranges, divides them into
# ticks and scales them to pixels (up to about 1e4); near the float maximum (1.8e308) any of
# these overflows. 1e300 leaves eight orders of magnitude of headroom.
MAX_MAGNITUDE = 1e300
_NPY_DIMENSIONS = 2


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
