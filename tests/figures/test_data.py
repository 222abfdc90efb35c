"""Uploaded tables: the parser, the limits checked before drawing, and drawing what passes.

The invariant: the parser and the checks raise nothing but ``DataError`` (which the web layer
answers with a 400 naming the parameter), and every table and choice of columns they accept
draws without an exception or a warning.
"""

from __future__ import annotations

import csv
import io
import math
import struct
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from matplotlib.figure import Figure
from pydantic import ValidationError

from figserve.figures.data import (
    LIMITS,
    Limits,
    PlotParams,
    auto_bins,
    bin_edges,
    draw_table,
    resolve_columns,
)
from figserve.figures.layout import fit_unless_laid_out
from figserve.figures.tables import MAX_MAGNITUDE, DataError, Table, parse_table

from .test_catalog import FONT_CHARS

UPLOADS_DOC = Path(__file__).resolve().parents[2] / "docs" / "uploads.md"
MAX_ROWS, MAX_COLUMNS = 100_000, 50
# Generated tables are often refused by the parser on purpose (the tests skip those): that much
# filtering is expected, not a sign of a weak strategy.
PROPERTY = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
# Small limits, so generated tables reach them (and the thinned tick labels) cheaply.
SMALL = Limits(
    labels=6, label_chars=6, tick_labels=2, line_points=24, scatter_points=24, bar_points=24, bins=3
)


def parse(data: bytes | str, filename: str = "data.csv") -> Table:
    raw = data.encode() if isinstance(data, str) else data
    return parse_table(filename, raw, MAX_ROWS, MAX_COLUMNS)


def draw(
    table: Table, params: PlotParams, fmt: str = "png", limits: Limits = LIMITS, dpi: int = 25
) -> Figure:
    """Draw at the upload default of 640x400 (at 25 dpi: 160x100 pixels); a warning fails."""
    fig = Figure(figsize=(6.4, 4), dpi=dpi)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        draw_table(fig, table, params, limits)
        fit_unless_laid_out(fig)  # as the renderer does
        fig.savefig(io.BytesIO(), format=fmt)
    return fig


def refused(table: Table, params: PlotParams, limits: Limits = LIMITS) -> DataError:
    """The error of a refused plot; and refused before anything was drawn."""
    fig = Figure()
    with pytest.raises(DataError) as info:
        draw_table(fig, table, params, limits)
    assert fig.axes == []
    with pytest.raises(DataError):
        resolve_columns(table, params, limits)
    return info.value


def npy(array: np.ndarray, version: tuple[int, int] | None = None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=False)
    return buf.getvalue()


def npy_raw(header: str | bytes, body: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """A .npy file written by hand: any header, any body."""
    text = header.encode("latin-1", "replace") if isinstance(header, str) else header
    size = struct.pack("<H" if version == (1, 0) else "<I", len(text))
    return b"\x93NUMPY" + bytes(version) + size + text + body


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue()


# --- the exploding uploads an outside review found ----------------------------------------------


def test_five_thousand_text_labels_are_refused_before_drawing() -> None:
    # 5,000 distinct labels in a 34 KB file used to draw for tens of seconds.
    data = "city,n\n" + "".join(f"c{i},{i % 7}\n" for i in range(5000))
    assert len(data) < 40_000
    table = parse(data)
    for kind in ("line", "scatter"):
        err = refused(table, PlotParams(kind=kind, x="city", y="n"))
        assert err.param == "x"
        assert str(err) == "column 'city': 5,000 distinct labels, the limit is 2,000"


def test_a_hundred_thousand_points_are_refused_before_drawing() -> None:
    table = parse("t,v\n" + "".join(f"l{i},{i}\n" for i in range(100_000)))
    err = refused(table, PlotParams(kind="line", x="t", y="v"))
    assert (err.param, str(err)) == (
        "y",
        "column 'v': 100,000 points, the limit for line is 20,000",
    )


@pytest.mark.parametrize(
    ("kind", "rows", "series", "message"),
    [
        ("line", 11, 1, "column 'y0': 11 points, the limit for line is 10"),
        ("scatter", 6, 2, "columns 'y0', 'y1': 2 series of 6 points, 12 in all; the limit for "),
        ("bar", 4, 3, "columns 'y0', 'y1', 'y2': 3 series of 4 points, 12 in all; the limit "),
        ("hist", 11, 1, "column 'x': 11 points, the limit for hist is 10"),
    ],
)
def test_points_are_limited_per_kind_summed_over_series(kind, rows, series, message) -> None:
    columns = {"x": np.arange(rows, dtype=float)}
    columns |= {f"y{i}": np.ones(rows) for i in range(series)}
    table = Table(columns)
    limits = Limits(line_points=10, scatter_points=10, bar_points=10, hist_points=10)
    y = None if kind == "hist" else ",".join(f"y{i}" for i in range(series))
    err = refused(table, PlotParams(kind=kind, x="x", y=y), limits)
    assert str(err).startswith(message)
    assert err.param == ("x" if kind == "hist" else "y")
    # One point fewer per series draws.
    smaller = Table({name: col[: 10 // series] for name, col in columns.items()})
    draw(smaller, PlotParams(kind=kind, x="x", y=y), limits=limits)


@pytest.mark.parametrize("value", ["1.7e308", "-1.7976931348623157e308", "1e301"])
def test_numbers_near_the_float_maximum_are_refused_naming_line_and_column(value: str) -> None:
    with pytest.raises(DataError) as info:
        parse(f"x,y\n1,2\n3,{value}\n")
    assert info.value.param == "file"
    assert str(info.value) == (
        f"line 3, column 'y': {value!r} is too large (numbers are limited to ±1e+300)"
    )


@pytest.mark.parametrize("kind", ["line", "scatter", "bar", "hist"])
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_the_largest_and_smallest_numbers_allowed_draw(kind: str, fmt: str) -> None:
    table = parse("x,y\n-1e300,1e300\n5e-324,-1e300\n0,2.2e-308\n")
    draw(table, PlotParams(kind=kind, x="x", y=None if kind == "hist" else "y"), fmt)


def test_npy_numbers_past_the_limit_are_refused() -> None:
    with pytest.raises(DataError, match=r"row 2, column '1': 1e\+305 is too large"):
        parse(npy(np.array([[1.0, 2.0], [3.0, 1e305]])), "a.npy")
    with pytest.raises(DataError, match="row 1, column '0': inf is not finite"):
        parse(npy(np.array([np.float32(np.inf)])), "a.npy")


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        # A 64-byte body whose header asks for terabytes: refused on the header alone.
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }", "rows"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (10, 137438953472), }", "columns"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (100, 2), }", "1,600 bytes"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2, 2), }", "3-D"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }", "empty"),
        ("{'descr': '|O', 'fortran_order': False, 'shape': (8,), }", "not real numbers"),
        ("{'descr': '<c16', 'fortran_order': False, 'shape': (4,), }", "not real numbers"),
        ("{'descr': '|b1', 'fortran_order': False, 'shape': (64,), }", "not real numbers"),
        ("{'descr': [('a', '<f8', (2,))], 'fortran_order': False, 'shape': (4,), }", "'a'"),
        ("{'descr': [('\xad', '<f8')], 'fortran_order': False, 'shape': (8,), }", "U+00AD"),
        ("{'descr': '<f8', 'fortran_order': False}", ".npy"),
        ("{'descr': 'zz', 'fortran_order': False, 'shape': (8,), }", ".npy"),
        ("{'descr': '<f8', 'fortran_order': False, 'shape': (-8,), }", ".npy"),
        ("[1, 2, 3]", ".npy"),
        ("{'descr': '<f8', " * 2000, ".npy"),
        ("not python at all (", ".npy"),
    ],
)
def test_npy_headers_are_checked_before_anything_is_allocated(header: str, fragment: str) -> None:
    data = npy_raw(header.ljust(118) + "\n", bytes(64))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            parse(data, "big.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.param == "file"
    assert fragment in str(info.value)
    assert peak < 10_000_000
    assert len(str(info.value)) < 300


def test_npy_versions_other_than_1_and_2_are_refused() -> None:
    body = np.arange(4.0).tobytes()
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }".ljust(59) + "\n"
    assert parse(npy_raw(header, body, (2, 0)), "a.npy").rows == 4
    for version in [(3, 0), (0, 9)]:
        with pytest.raises(DataError, match=r"version \d\.\d is not supported"):
            parse(npy_raw(header, body, version), "a.npy")
    with pytest.raises(DataError, match=r"\.npy"):
        parse(b"\x93NUMPY", "a.npy")


def test_npy_fortran_order_and_byte_order_read_as_saved() -> None:
    array = np.asfortranarray(np.arange(12, dtype=">f4").reshape(4, 3) * 1.5)
    table = parse(npy(array), "f.npy")
    assert list(table.columns) == ["0", "1", "2"]
    for j in range(3):
        assert table.columns[str(j)].tolist() == array[:, j].astype(float).tolist()
    records = np.array([(1, 2.5), (3, 4.5)], dtype=[("n", "<i2"), ("v", ">f8")])
    table = parse(npy(records), "r.npy")
    assert table.columns["n"].tolist() == [1.0, 3.0] and table.columns["v"].tolist() == [2.5, 4.5]


def test_histogram_bins_stay_bounded_with_outliers() -> None:
    # numpy's "auto" rule asks for millions of bins here (a narrow bulk, two far outliers).
    values = np.concatenate([np.random.default_rng(1).normal(size=10_000), [1e12, -1e300]])
    table = Table({"x": values})
    assert auto_bins(values, LIMITS.bins) == LIMITS.bins
    fig = draw(table, PlotParams(kind="hist"))
    (outline,) = fig.axes[0].patches  # one filled step outline: four vertices per bin
    assert len(outline.get_xy()) == 4 * LIMITS.bins + 1

    assert auto_bins(np.random.default_rng(2).normal(size=1000), 100) < 30  # the rule, uncapped


@pytest.mark.parametrize(
    "values",
    [
        [1e6, 1e6 + 1e-10, 1e6 + 2e-10, 1e6],  # a spread below what floats can bin at 1e6
        [0.0] * 5,
        [1e300] * 3,
        [-1e300, 1e300],
        [0.0, 5e-324],
        [2.2e-308, 2.2250738585072014e-308],
        [1.0],
    ],
)
@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_histograms_of_near_constant_data_draw(values: list[float], fmt: str) -> None:
    draw(Table({"x": np.array(values)}), PlotParams(kind="hist"), fmt)


@given(
    st.lists(
        st.floats(-MAX_MAGNITUDE, MAX_MAGNITUDE, allow_nan=False), min_size=1, max_size=50
    ).map(np.array),
    st.integers(1, 200),
)
@example(np.array([1e6, 1e6 + 1e-10]), 200)
def test_bin_edges_split_any_range_into_increasing_bins(values: np.ndarray, bins: int) -> None:
    edges = bin_edges(values, bins)
    assert len(edges) == bins + 1
    assert (np.diff(edges) > 0).all()
    assert edges[0] <= values.min() and values.max() <= edges[-1]
    assert np.histogram(values, edges)[0].sum() == values.size


# --- text drawn from uploads --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("a,b\u200b\n1,2\n", "line 1, column 2: column name U+200B (ZERO WIDTH SPACE) cannot"),
        ("a,\u0301\n1,2\n", "line 1, column 2: column name U+0301 (COMBINING ACUTE ACCENT) must"),
        ("\ue000\n1\n", "line 1, column 1: column name U+E000 cannot be drawn"),
        ("a,\u4e2d\n1,2\n", "line 1, column 2: column name U+4E2D (CJK UNIFIED IDEOGRAPH-4E2D)"),
        ("a," + "b" * 65 + "\n1,2\n", "line 1, column 2: column names are limited to 64 chars"),
    ],
)
def test_column_names_must_be_drawable(data: str, message: str) -> None:
    with pytest.raises(DataError) as info:
        parse(data)
    assert info.value.param == "file"
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("x\ufeffy", "column 'city', line 4: U+FEFF (ZERO WIDTH NO-BREAK SPACE) cannot be drawn"),
        ("\u0301", "column 'city', line 4: U+0301 (COMBINING ACUTE ACCENT) must follow"),
        ("ab\U0001d11e", "column 'city', line 4: U+1D11E (MUSICAL SYMBOL G CLEF) cannot be drawn"),
        ("w" * 41, "column 'city', line 4: a label of 41 characters, the limit is 40"),
    ],
)
@pytest.mark.parametrize("kind", ["line", "scatter", "bar"])
def test_text_cells_drawn_as_labels_must_be_drawable(cell: str, message: str, kind: str) -> None:
    table = parse(
        csv_text(["city", "n", "note"], [["Oslo", "1", ""], ["", "2", "x"], [cell, "3", ""]])
    )
    err = refused(table, PlotParams(kind=kind, x="city", y="n"))
    assert (err.param, str(err)[: len(message)]) == ("x", message)


def test_text_that_is_not_drawn_is_not_checked_and_math_is_not_parsed() -> None:
    table = parse(csv_text(["city", "n", "note"], [["$\\frac{$", "1", "\u200b" * 500]]))
    for kind in ("line", "scatter", "bar"):
        draw(table, PlotParams(kind=kind, x="city", y="n"), "pdf")


def test_a_long_text_cell_costs_memory_by_its_length_not_times_the_rows() -> None:
    # A fixed-width string column would take rows x longest cell: here 1,000 x 100,000 x 4 bytes.
    data = "a,b\n" + "x" * 100_000 + ",1\n" + "y,2\n" * 999
    tracemalloc.start()
    try:
        table = parse(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.rows == 1000
    assert peak < 20_000_000


def test_many_bars_and_categories_get_a_bounded_number_of_tick_labels() -> None:
    labels = [f"d{i}" for i in range(500)]
    table = parse(csv_text(["day", "n"], [[d, str(i)] for i, d in enumerate(labels)]))
    for kind in ("bar", "line"):
        fig = draw(table, PlotParams(kind=kind, x="day", y="n"), dpi=100)
        shown = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
        assert 2 <= len(shown) <= LIMITS.tick_labels
        assert set(shown) <= set(labels)
    few = Table({"x": np.array(["a", "b$", "c"], dtype=object), "y": np.arange(3.0)})
    fig = draw(few, PlotParams(kind="bar"), dpi=100)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b\\$", "c"]


def test_the_docs_state_each_limit() -> None:
    text = UPLOADS_DOC.read_text()
    for value in (
        LIMITS.labels,
        LIMITS.label_chars,
        LIMITS.tick_labels,
        LIMITS.line_points,
        LIMITS.scatter_points,
        LIMITS.bar_points,
        LIMITS.bins,
    ):
        assert f"{value:,}" in text
    assert f"{MAX_MAGNITUDE:g}".replace("+", "") in text


# --- properties -----------------------------------------------------------------------------------


@settings(PROPERTY, max_examples=150)
@given(st.sampled_from(["data.csv", "data.npy", ""]), st.binary(max_size=300))
@example("data.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8'}")
def test_arbitrary_bytes_parse_or_raise_a_data_error(filename: str, data: bytes) -> None:
    try:
        table = parse_table(filename, data, 50, 5)
    except DataError as exc:
        assert exc.param == "file" and str(exc)
    else:
        assert 1 <= len(table.columns) <= 5 and 1 <= table.rows <= 50


def _descr() -> st.SearchStrategy[object]:
    simple = st.sampled_from(
        [
            *("<f8", ">f8", "<f4", "<f2", "<i8", ">i2", "|u1", "<u8", "<f16", "<c8", "|b1"),
            *("<U3", "|O", "|V8", "|V0", "<M8[D]", "<m8[s]", "|S2", "<f8 ", "f8", "d", "", "x"),
        ]
    )
    fields = st.lists(
        st.tuples(st.text(max_size=4), simple) | st.tuples(st.text(max_size=2), simple, st.just(2)),
        max_size=3,
    )
    return simple | fields | st.text(max_size=8) | st.integers()


def _header() -> st.SearchStrategy[str]:
    shape = st.lists(
        st.integers(0, 6) | st.integers(-2, 2**64) | st.sampled_from([1 << 40, 10**12]),
        max_size=4,
    ).map(tuple)
    order = st.booleans() | st.sampled_from([0, 1, None, "F"])
    fields = st.fixed_dictionaries({"descr": _descr(), "fortran_order": order, "shape": shape})
    extra = st.dictionaries(st.sampled_from(["descr", "shape", "x"]), st.integers(), max_size=1)
    return st.builds(lambda d, e: repr(d | e), fields, extra) | st.text(max_size=80)


@settings(PROPERTY, max_examples=300)
@given(
    _header(),
    st.sampled_from([(1, 0), (2, 0), (3, 0), (1, 1)]),
    st.binary(max_size=96) | st.integers(0, 96).map(bytes),
    st.booleans(),
)
def test_arbitrary_npy_headers_raise_only_a_data_error(
    header: str, version: tuple[int, int], body: bytes, pad: bool
) -> None:
    text = header.ljust((len(header) // 64 + 1) * 64 - 11) + "\n" if pad else header
    data = npy_raw(text, body, version)
    try:
        table = parse_table("a.npy", data, 50, 5)
    except DataError as exc:
        assert exc.param == "file" and str(exc) and len(str(exc)) < 300
    else:
        assert 1 <= len(table.columns) <= 5 and 1 <= table.rows <= 50


finite = st.floats(-MAX_MAGNITUDE, MAX_MAGNITUDE, allow_nan=False)
extremes = st.sampled_from(
    [0.0, -0.0, 5e-324, 2.2e-308, 1e-300, 1e300, -1e300, 1e6 + 1e-10, 1e15, 2.0**53 + 1]
)


def _number_cells(size: int) -> st.SearchStrategy[list[str]]:
    spread = st.builds(
        lambda base, steps: [repr(base + k * math.ulp(base)) for k in steps],
        finite | extremes,
        st.lists(st.integers(0, 3), min_size=size, max_size=size),
    )
    plain = st.lists(finite | extremes, min_size=size, max_size=size).map(
        lambda vs: [repr(v) for v in vs]
    )
    return spread | plain | st.lists(st.integers(-5, 5).map(str), min_size=size, max_size=size)


# Mostly text of the font's characters (often drawable, so the table gets drawn), sometimes
# arbitrary text (then usually refused, which must be a DataError too).
drawable_text = st.text(st.sampled_from(FONT_CHARS), min_size=1, max_size=6)
any_text = st.one_of(*[drawable_text] * 6, st.text(max_size=8))


def _text_cells(size: int) -> st.SearchStrategy[list[str]]:
    cell = any_text | st.sampled_from(["a", "b", "$x$", "1e999", "nan", "", " "])
    return st.lists(cell, min_size=size, max_size=size)


@st.composite
def csv_tables(draw_: st.DrawFn) -> tuple[bytes, list[str], list[str]]:
    """A CSV file, its column names and the names of its numeric columns."""
    rows = draw_(st.integers(1, 12))

    n_columns = draw_(st.integers(1, 4))
    name = any_text.filter(str.strip)
    names = draw_(st.lists(name, min_size=n_columns, max_size=n_columns, unique_by=str.strip))

    numeric = draw_(st.lists(st.booleans(), min_size=n_columns, max_size=n_columns))
    columns = [draw_(_number_cells(rows) if num else _text_cells(rows)) for num in numeric]
    body = csv_text(names, [[col[i] for col in columns] for i in range(rows)])
    stripped = [n.strip() for n in names]
    return body.encode(), stripped, [n for n, num in zip(stripped, numeric, strict=True) if num]


@st.composite
def plots(draw_: st.DrawFn, names: list[str], numeric: list[str]) -> dict[str, object]:
    """A plot request for these columns: y mostly among the numeric ones."""
    kind = draw_(st.sampled_from(["line", "scatter", "bar", "hist"]))
    some = st.sampled_from(names)
    number = st.sampled_from(numeric) if numeric else some
    x = draw_(st.none() | (number if kind == "hist" else some))
    y = draw_(st.none() | st.lists(number | some, min_size=1, max_size=3).map(",".join))
    title = draw_(any_text)
    return {"kind": kind, "x": x, "y": None if kind == "hist" else y, "title": title}


def _draw_if_accepted(data: bytes, filename: str, plot: dict, limits: Limits, fmt: str) -> None:
    try:
        table = parse_table(filename, data, 50, 5)
        params = PlotParams.model_validate(plot)
        resolve_columns(table, params, limits)
    except DataError as exc:
        assert exc.param in {"file", "x", "y"} and str(exc)
        assume(False)
    except ValidationError:
        assume(False)
    draw(table, params, fmt, limits)


@pytest.mark.property
@settings(PROPERTY, max_examples=20)
@given(st.data(), csv_tables(), st.sampled_from([LIMITS, SMALL]))
def test_every_accepted_csv_table_draws(data, table, limits: Limits) -> None:
    body, names, numeric = table
    _draw_if_accepted(body, "t.csv", data.draw(plots(names, numeric)), limits, "png")


@pytest.mark.property
@settings(PROPERTY, max_examples=8)
@given(st.data(), csv_tables(), st.sampled_from(["svg", "pdf", "jpeg"]))
def test_every_accepted_csv_table_draws_in_other_formats(data, table, fmt: str) -> None:
    body, names, numeric = table
    _draw_if_accepted(body, "t.csv", data.draw(plots(names, numeric)), LIMITS, fmt)


real_dtypes = st.sampled_from(["<f8", ">f8", "<f4", "<f2", "<i8", ">i4", "|i1", "|u1", "<u2"])


@pytest.mark.property
@settings(PROPERTY, max_examples=20)
@given(
    st.data(),
    hnp.arrays(real_dtypes, hnp.array_shapes(min_dims=1, max_dims=2, max_side=8)),
    st.booleans(),
)
def test_every_accepted_npy_array_reads_back_and_draws(data, array: np.ndarray, fortran) -> None:
    saved = np.asfortranarray(array) if fortran else array
    blob = npy(saved)
    try:
        table = parse_table("a.npy", blob, 50, 5)
    except DataError as exc:
        # Refused only for a reason: too many columns, or values not finite or too large.
        with np.errstate(over="ignore", invalid="ignore"):
            values = array.astype(float)
        too_wide = array.ndim == 2 and array.shape[1] > 5
        bad = not np.isfinite(values).all() or (np.abs(values) > MAX_MAGNITUDE).any()
        assert exc.param == "file" and (too_wide or bad), str(exc)
        assume(False)
    matrix = array.reshape(array.shape[0], -1)
    assert list(table.columns) == [str(j) for j in range(matrix.shape[1])]
    for j in range(matrix.shape[1]):
        assert table.columns[str(j)].tolist() == matrix[:, j].astype(float).tolist()
    names = list(table.columns)
    _draw_if_accepted(blob, "a.npy", data.draw(plots(names, names)), LIMITS, "png")
