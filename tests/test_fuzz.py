"""Fuzzing: property tests of every parser of request and configuration input, and schemathesis
against the app's own ``/openapi.json``. Bad input must end in a clear 4xx (a ``Problem`` or a
named error), never in an unexpected exception or a 5xx.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.datastructures import MultiDict

from src.app import create_app
from src.config import Settings
from src.figures import FIGURES
from src.figures.data import DataError, parse_table
from src.render import ImageOptions, LimitExceeded, canvas_for
from src.web.errors import Problem
from src.web.params import (
    MAX_QUERY_VALUE,
    OPTION_NAMES,
    format_number,
    parse_figure_request,
    parse_mean_var,
    single_values,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPECS = list(FIGURES)


def assert_problem_400(exc: Problem) -> None:
    assert exc.status == 400
    assert exc.errors, "a 400 names the parameters at fault"
    for err in exc.errors:
        assert isinstance(err["param"], str) and err["message"]  # the key as given, maybe ""


# --- /fig/<mean>_<var> -------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@FAST
@given(st.text(max_size=60))
def test_mean_var_parses_or_is_a_400(text: str) -> None:
    try:
        mean, var = parse_mean_var(text)
    except Problem as exc:
        assert_problem_400(exc)
        assert exc.errors[0]["param"] == "mean_var"
    else:
        assert math.isfinite(mean) and math.isfinite(var)


@FAST
@given(finite, finite)
def test_mean_var_round_trips_through_its_path_form(mean: float, var: float) -> None:
    path = f"{format_number(mean)}_{format_number(var)}"
    assert "e" not in path.lower()
    assert parse_mean_var(path) == (mean + 0.0, var + 0.0)


# --- query strings -----------------------------------------------------------------------------

keys = st.sampled_from(sorted(OPTION_NAMES | {"seed", "n", "mean", "title", "bins", "x"}))
query_items = st.lists(st.tuples(keys | st.text(max_size=8), st.text(max_size=250)), max_size=8)


@FAST
@given(query_items)
def test_single_values_keeps_each_key_once_or_is_a_400(items: list[tuple[str, str]]) -> None:
    args = MultiDict(items)
    try:
        out = single_values(args)
    except Problem as exc:
        assert_problem_400(exc)
    else:
        assert set(out) == set(args)
        assert all(len(args.getlist(k)) == 1 and len(v) <= MAX_QUERY_VALUE for k, v in out.items())


def scalar_text() -> st.SearchStrategy[str]:
    numbers = st.one_of(
        st.integers(-(2**40), 2**40).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["", "nan", "inf", "-0", "1e309", "0x10", "1_000", " 3 ", "true"]),
    )
    return numbers | st.text(max_size=20)


@FAST
@given(
    st.sampled_from(SPECS), st.dictionaries(keys | st.text(max_size=8), scalar_text(), max_size=6)
)
def test_figure_requests_validate_or_are_a_400(spec, values: dict[str, str]) -> None:
    try:
        params, opts = parse_figure_request(spec, values, fixed={"format": "png"})
    except Problem as exc:
        assert_problem_400(exc)
    else:
        assert isinstance(params, spec.params)
        assert isinstance(opts, ImageOptions)
        assert opts.format == "png"
        # What was accepted reads back the same from its own query form.
        again, _ = parse_figure_request(
            spec,
            {k: str(v) for k, v in params.model_dump(exclude_none=True).items()},
            fixed={"format": "png"},
        )
        assert again == params


@FAST
@given(st.sampled_from(SPECS), scalar_text().filter(bool))
def test_the_query_may_not_repeat_what_the_path_gives(spec, value: str) -> None:
    with pytest.raises(Problem) as info:
        parse_figure_request(spec, {"format": value}, fixed={"format": "png"})
    assert_problem_400(info.value)
    assert {"param": "format", "message": "already given in the path"} in info.value.errors


# --- image size ----------------------------------------------------------------------------------

options = st.builds(
    ImageOptions,
    format=st.sampled_from(["png", "svg", "pdf", "webp", "jpeg"]),
    w=st.integers(50, 3000),
    h=st.integers(50, 3000),
    dpr=st.floats(1, 3),
)


@FAST
@given(options, st.integers(1, 20_000_000))
def test_canvas_respects_the_pixel_limit(opts: ImageOptions, max_pixels: int) -> None:
    try:
        canvas = canvas_for(opts, max_pixels)
    except LimitExceeded as exc:
        assert exc.param == "w" and "pixels" in str(exc)
    else:
        assert canvas.width_px >= 1 and canvas.height_px >= 1
        assert canvas.width_px * canvas.height_px <= max_pixels
        assert canvas.dpi == pytest.approx(100 * opts.dpr)


# --- uploads -------------------------------------------------------------------------------------


def csv_bytes() -> st.SearchStrategy[bytes]:
    cell = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(-1000, 1000).map(str),
        st.text(alphabet=st.characters(codec="utf-8"), max_size=6),
        st.sampled_from(["", '"a,b"', '"', "1e5", "-", "NaN"]),
    )
    row = st.lists(cell, min_size=0, max_size=4).map(",".join)
    return st.lists(row, max_size=8).map(lambda rows: "\n".join(rows).encode())


def npy_bytes() -> st.SearchStrategy[bytes]:
    def save(array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        return buf.getvalue()

    shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
    dtypes = st.sampled_from(["f8", "i4", "u1", "c8", "U3", "?"])
    arrays = st.tuples(shapes, dtypes).map(lambda t: np.zeros(t[0], dtype=t[1]))
    return arrays.map(save) | arrays.map(save).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda n: b[:n])  # truncated files
    )


@FAST
@given(
    st.sampled_from(["data.csv", "data.npy", "data.txt", ""]),
    st.one_of(csv_bytes(), npy_bytes(), st.binary(max_size=200)),
)
def test_uploaded_tables_parse_or_name_the_problem(filename: str, data: bytes) -> None:
    try:
        table = parse_table(filename, data, max_rows=50, max_columns=5)
    except DataError as exc:
        assert exc.param and str(exc)
    else:
        assert 1 <= len(table.columns) <= 5
        assert 1 <= table.rows <= 50


# --- configuration -------------------------------------------------------------------------------

setting_names = st.sampled_from([f"FIGSERVE_{name.upper()}" for name in Settings.__annotations__])


@FAST
@given(st.dictionaries(setting_names, scalar_text(), max_size=4))
def test_settings_from_env_convert_or_name_the_variable(environ: dict[str, str]) -> None:
    try:
        parsed = Settings.from_env(environ)
    except ValueError as exc:
        assert any(name in str(exc) for name in environ)
    else:
        for name, raw in environ.items():
            value = getattr(parsed, name.removeprefix("FIGSERVE_").lower())
            assert isinstance(
                value, type(getattr(Settings(), name.removeprefix("FIGSERVE_").lower()))
            )
            if isinstance(value, str):
                assert value == raw


# --- the HTTP API, from its own OpenAPI document --------------------------------------------------


def _valid_paths_too(context, path_parameters: dict | None) -> st.SearchStrategy:
    """The document types ``fmt`` and ``mean_var`` as plain strings; half of the generated
    paths use real formats and numbers, so renders run too, not only 404s."""
    if not path_parameters:
        return st.just(path_parameters)
    if "fmt" in path_parameters:
        fmt = st.sampled_from(["png", "svg", "pdf", "webp", "jpeg"])
        return st.one_of(fmt.map(lambda f: {**path_parameters, "fmt": f}), st.just(path_parameters))
    if "mean_var" in path_parameters:
        number = st.floats(-1e7, 1e7, allow_nan=False).map(format_number)
        pairs = st.tuples(number, number).map(lambda t: {"mean_var": f"{t[0]}_{t[1]}"})
        return st.one_of(pairs, st.just(path_parameters))
    return st.just(path_parameters)


def _load_schema() -> tuple[object, Path]:
    """The app's own document, read without starting the app: schemathesis starts serving
    (runs its lifespan) at the first generated request, not while tests are being collected."""
    jobs = Path(tempfile.gettempdir()) / f"figserve-fuzz-jobs-{os.getpid()}"
    app = create_app({"warm_up": False, "jobs_dir": str(jobs), "render_timeout": 30.0})

    async def document() -> dict:
        return await (await app.test_client().get("/openapi.json")).get_json()

    loaded = schemathesis.openapi.from_dict(asyncio.run(document()))
    loaded.app = app
    loaded.location = "/openapi.json"
    loaded.hook("flatmap_path_parameters")(_valid_paths_too)
    return loaded, jobs


schema, JOBS_DIR = _load_schema()


@pytest.fixture(scope="module", autouse=True)
def _stop_serving() -> Iterator[None]:
    yield
    from schemathesis.python import asgi

    asgi.shutdown_lifespans()  # the app's after_serving: pools closed before the module ends
    shutil.rmtree(JOBS_DIR, ignore_errors=True)


# Matplotlib warns (it does not fail) on glyphs its font lacks and on layouts too small to
# apply; the suite turns warnings into errors, which here would read as server errors.
@pytest.mark.filterwarnings("ignore:Glyph .* missing from font")
@pytest.mark.filterwarnings("ignore:constrained_layout not applied")
@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_answers_every_generated_request_within_its_schema(case) -> None:
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
