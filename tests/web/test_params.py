"""Query and form parsing: unknown keys are errors whatever their value, and numbers are plain
ASCII of bounded length, on every route that takes a query or a form."""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from figserve.figures import FIGURES
from figserve.render import ImageOptions
from figserve.validation import MAX_NUMBER_TEXT, MAX_TEXT_VALUE, number_errors, parse_count
from figserve.web.errors import Problem
from figserve.web.params import format_number, parse_mean_var, single_values

FAST = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
# Characters str.isdigit() or int() accept that are not ASCII digits.
ODD_DIGITS = ["²", "³", "¹", "٣", "۴", "५", "৬", "\uff13", "\U0001d7d5", "①", "፩"]


@pytest.fixture
def app_config(tmp_path: Path) -> dict:
    return {"warm_up": False, "jobs_dir": str(tmp_path / "jobs")}


def non_ascii_digit() -> st.SearchStrategy[str]:
    return st.characters(
        categories=["Nd", "No", "Nl"], exclude_characters="0123456789"
    ) | st.sampled_from(ODD_DIGITS)


# --- unknown keys --------------------------------------------------------------------------------

QUERY_ROUTES = ["/fig/5_3", "/figures/histogram.png", "/gallery/histogram"]


@pytest.mark.parametrize("path", QUERY_ROUTES)
@pytest.mark.parametrize("value", ["", "1", "x"])
async def test_unknown_query_keys_are_errors_even_when_blank(client, path, value):
    resp = await client.get(f"{path}?seed=1&foo={value}")
    assert resp.status_code == 400
    body = await resp.get_data(as_text=True)
    assert "foo" in body and "unknown parameter" in body


async def test_blank_known_keys_still_mean_the_default(client):
    assert (await client.get("/fig/5_3?seed=&w=&dpi=")).status_code == 200
    assert (await client.get("/gallery/histogram?seed=&bins=")).status_code == 200


@pytest.mark.parametrize(
    "path", ["/api/figures", "/jobs", "/jobs/" + "0" * 32, "/jobs/" + "0" * 32 + "/result"]
)
async def test_routes_that_take_no_query_refuse_one(client, path):
    resp = await client.get(f"{path}?debug=")
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "debug"


async def test_the_gallery_page_lists_errors_that_have_no_field(client):
    resp = await client.get("/gallery/histogram?bogus=", headers={"Accept": "text/html"})
    assert resp.status_code == 400
    assert "<code>bogus</code>: unknown parameter" in await resp.get_data(as_text=True)


def blank_unknown_upload(extra: str) -> tuple[bytes, str]:
    parts = [
        '--x\r\nContent-Disposition: form-data; name="file"; filename="d.csv"\r\n\r\na,b\n1,2\n'
        "\r\n",
        f'--x\r\nContent-Disposition: form-data; name="{extra}"\r\n\r\n\r\n',
        "--x--\r\n",
    ]
    return "".join(parts).encode(), "multipart/form-data; boundary=x"


async def test_unknown_upload_fields_are_errors_even_when_blank(client):
    data, content_type = blank_unknown_upload("colour")
    resp = await client.post("/api/plot", data=data, headers={"Content-Type": content_type})
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "colour"
    data, content_type = blank_unknown_upload("title")  # a known one, blank: the default
    resp = await client.post("/api/plot", data=data, headers={"Content-Type": content_type})
    assert resp.status_code == 200


async def test_unknown_report_form_fields_are_errors_even_when_blank(client):
    for extra in ("bogus", "histogram.nope", "copies.pie"):
        form = [("figure", "waves"), (extra, "")]
        resp = await client.post("/jobs", data=urlencode(form), headers=FORM)
        assert resp.status_code == 400, extra
        assert (await resp.get_json())["param"] == extra
    assert (await (await client.get("/jobs")).get_json())["jobs"] == []


# --- numbers -------------------------------------------------------------------------------------


@pytest.mark.parametrize("digit", ODD_DIGITS)
async def test_report_copies_in_other_digits_are_a_400(client, digit):
    form = [("figure", "histogram"), ("copies.histogram", digit), ("histogram.seed", "4")]
    resp = await client.post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "copies.histogram"


@pytest.mark.parametrize("digit", ODD_DIGITS)
async def test_a_seed_in_other_digits_is_a_400_everywhere(client, digit):
    form = [("figure", "histogram"), ("copies.histogram", "3"), ("histogram.seed", digit)]
    resp = await client.post("/jobs", data=urlencode(form), headers=FORM)
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "histogram.seed"
    for path in ("/figures/histogram.png", "/gallery/histogram"):
        resp = await client.get(path, query_string={"seed": digit})
        assert resp.status_code == 400


@pytest.mark.parametrize("path", ["/fig/5_3", "/normal/5_3"])
async def test_paths_take_ascii_digits_only(client, path):
    assert (await client.get(path.replace("5", "\u0665"))).status_code == 400  # Arabic-Indic 5
    assert (await client.get(path.replace("3", "³"))).status_code == 400


@FAST
@given(
    text=st.lists(non_ascii_digit() | st.sampled_from("0123456789.-+e_ "), min_size=1, max_size=8)
    .map("".join)
    .filter(lambda t: not t.isascii())
)
def test_no_number_with_a_character_outside_ascii_is_accepted(text):
    assert parse_count(text, "n", default=1, largest=10**6)[1]
    with pytest.raises(Problem):
        parse_mean_var(f"{text}_1")
    spec = FIGURES.get("histogram")
    assert number_errors({"bins": text, "mean": text, "w": text}, (spec.params, ImageOptions))


@FAST
@given(st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False))
def test_plain_numbers_pass_and_mean_what_they_say(whole, real):
    spec = FIGURES.get("histogram")
    values = {"bins": str(whole), "mean": repr(real), "w": str(abs(whole))}
    assert number_errors(values, (spec.params, ImageOptions)) == []
    count, errors = parse_count(str(whole), "n", default=1, largest=10**6)
    assert (count, errors == []) == ((whole, True) if whole >= 1 else (0, False))


@FAST
@given(st.text(alphabet="0123456789", min_size=MAX_NUMBER_TEXT + 1, max_size=4 * MAX_NUMBER_TEXT))
def test_numbers_are_length_limited(text):
    spec = FIGURES.get("histogram")
    assert number_errors({"bins": text}, (spec.params,))
    assert parse_count(text, "n", default=1, largest=10**6)[1]


@pytest.mark.parametrize("text", ["1_000", " 3", "3 ", "0x10", "1e3", "3.0"])
async def test_integer_parameters_take_plain_whole_numbers(client, text):
    resp = await client.get("/figures/histogram.png", query_string={"bins": text})
    assert resp.status_code == 400
    assert (await resp.get_json())["param"] == "bins"


def test_every_other_script_digit_is_refused():
    # All of Unicode's decimal digits but ASCII's: each would pass str.isdigit().
    digits = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Nd"]
    odd = [d for d in digits if d not in "0123456789"]
    assert len(odd) > 500
    assert all(parse_count(d * 2, "n", default=1, largest=10**6)[1] for d in odd)


def assert_problem_400(exc: Problem) -> None:
    assert exc.status == 400
    assert exc.errors, "a 400 names the parameters at fault"
    for err in exc.errors:
        assert isinstance(err.param, str) and err.message  # the key as given, maybe ""


# --- /fig/<mean>_<var> -------------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)


@FAST
@given(st.text(max_size=60))
def test_mean_var_parses_or_is_a_400(text: str) -> None:
    try:
        mean, var = parse_mean_var(text)
    except Problem as exc:
        assert_problem_400(exc)
        assert exc.errors[0].param == "mean_var"
    else:
        assert math.isfinite(mean) and math.isfinite(var)


@FAST
@given(
    st.floats(min_value=-1e6, max_value=1e6),
    st.floats(min_value=1e-300, max_value=1e6),
)
def test_mean_var_round_trips_through_its_path_form(mean: float, var: float) -> None:
    # Every value the normal figure takes, written as the page links write it.
    path = f"{format_number(mean)}_{format_number(var)}"
    assert "e" not in path.lower()
    assert parse_mean_var(path) == (mean + 0.0, var + 0.0)


query_keys = st.sampled_from(["w", "h", "dpr", "dpi", "format", "seed", "n", "mean", "title", "x"])
query_items = st.lists(
    st.tuples(query_keys | st.text(max_size=8), st.text(max_size=250)), max_size=8
)


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
        assert all(len(args.getlist(k)) == 1 and len(v) <= MAX_TEXT_VALUE for k, v in out.items())
