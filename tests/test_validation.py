"""The one validation of renders: flat text values, JSON specs and stored job items."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from figserve.figures import FIGURES
from figserve.render import ImageOptions
from figserve.validation import (
    OPTION_NAMES,
    FieldError,
    Invalid,
    RenderRequest,
    from_spec,
    from_stored,
    parse_flat,
)
from tests.support.strategies import scalar_text

FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
SPECS = list(FIGURES)


def flat(spec, values, fixed=None):
    return parse_flat(spec.params, values, default_size=(spec.width, spec.height), fixed=fixed)


def assert_named(exc: Invalid) -> None:
    assert exc.errors, "an invalid request names the parameters at fault"
    for err in exc.errors:
        assert isinstance(err, FieldError) and isinstance(err.param, str) and err.message


keys = st.sampled_from(sorted(OPTION_NAMES | {"seed", "n", "mean", "title", "bins", "x"}))


@FAST
@given(
    st.sampled_from(SPECS), st.dictionaries(keys | st.text(max_size=8), scalar_text(), max_size=6)
)
def test_flat_values_validate_or_name_every_wrong_one(spec, values: dict[str, str]) -> None:
    try:
        params, opts = flat(spec, values, fixed={"format": "png"})
    except Invalid as exc:
        assert_named(exc)
    else:
        assert isinstance(params, spec.params)
        assert isinstance(opts, ImageOptions)
        assert opts.format == "png"
        # What was accepted reads back the same from its own query form.
        again, _ = flat(
            spec,
            {k: str(v) for k, v in params.model_dump(exclude_none=True).items()},
            fixed={"format": "png"},
        )
        assert again == params


@FAST
@given(st.sampled_from(SPECS), scalar_text().filter(bool))
def test_the_query_may_not_repeat_what_the_path_gives(spec, value: str) -> None:
    with pytest.raises(Invalid) as info:
        flat(spec, {"format": value}, fixed={"format": "png"})
    assert_named(info.value)
    assert FieldError("format", "already given in the path") in info.value.errors


unknown = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="&=#%+"), max_size=12)


@FAST
@given(spec=st.sampled_from(SPECS), key=unknown, value=st.sampled_from(["", "1", "a"]))
def test_any_key_that_is_not_a_parameter_is_an_error_whatever_its_value(spec, key, value):
    assume(key not in spec.params.model_fields and key not in OPTION_NAMES)
    with pytest.raises(Invalid) as info:
        flat(spec, {key: value})
    assert FieldError(key, "unknown parameter") in info.value.errors


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
spec_keys = st.sampled_from(["figure", "params", "format", "w", "h", "dpr", "dpi", "extra"])


@FAST
@given(
    st.dictionaries(spec_keys, json_values | st.sampled_from([s.name for s in SPECS]), max_size=6)
    | json_values
)
def test_any_json_spec_is_a_render_or_names_what_is_wrong(raw) -> None:
    try:
        req = from_spec(FIGURES, raw, 6_000_000)
    except Invalid as exc:
        assert_named(exc)
    else:
        assert req.pixels <= 6_000_000
        # What the job store keeps comes back as the same render.
        again = from_stored(FIGURES, req.stored(), 6_000_000)
        assert again.job.key == req.job.key and again.params == req.params


def test_every_error_of_a_spec_is_listed_at_once() -> None:
    raw = {"figure": "histogram", "params": {"bins": 0, "n": "many"}, "w": 10, "colour": 1}
    with pytest.raises(Invalid) as info:
        from_spec(FIGURES, raw, 6_000_000, prefix="items.3.")
    params = [e.param for e in info.value.errors]
    assert params == ["items.3.colour", "items.3.params.n", "items.3.params.bins", "items.3.w"]


def test_a_canvas_past_the_pixel_limit_is_drawn_at_the_limit() -> None:
    spec = FIGURES.get("waves")
    params, opts = flat(spec, {"w": "3000", "h": "3000", "dpr": "3"})
    canvas = RenderRequest.of(spec, params, opts, 6_000_000).job.canvas
    assert canvas.pixels <= 6_000_000 < (canvas.width_px + 1) * (canvas.height_px + 1)


def _integer_fields(spec) -> list[tuple[str, int, int]]:
    """(key in a spec, least, greatest) of every integer a JSON spec of ``spec`` may give."""
    out = []
    for prefix, model in (("params.", spec.params), ("", ImageOptions)):
        for name, prop in model.model_json_schema()["properties"].items():
            kinds = prop.get("anyOf", [prop])
            whole = [k for k in kinds if k.get("type") == "integer"]
            if whole:
                low = whole[0].get("minimum", 0)
                high = whole[0].get("maximum", low + 1000)
                out.append((prefix + name, low, high))
    return out


def _spec_with(spec, key: str, value) -> dict:
    raw: dict = {"figure": spec.name, "params": {"seed": 1} if spec.random else {}}
    if key.startswith("params."):
        raw["params"][key.removeprefix("params.")] = value
    else:
        raw[key] = value
    return raw


integer_cases = [(spec, *field) for spec in SPECS for field in _integer_fields(spec)]


@FAST
@given(st.sampled_from(integer_cases), st.data())
def test_a_json_integer_may_be_written_with_a_zero_fraction(case, data) -> None:
    """JSON Schema's integer is a number without a fraction: 136 and 136.0 are the same
    render; 136.5, true and "136" are refused, naming the parameter."""
    spec, key, low, high = case
    value = data.draw(st.integers(low, min(high, low + 10**6)), label="value")
    try:
        expected = from_spec(FIGURES, _spec_with(spec, key, value), 6_000_000)
    except Invalid:
        assume(False)  # refused for another reason (a canvas past the limit)
    same = from_spec(FIGURES, _spec_with(spec, key, float(value)), 6_000_000)
    assert same.job.key == expected.job.key
    assert (same.params, same.options) == (expected.params, expected.options)
    for wrong in (value + 0.5, True, str(value), [value]):
        with pytest.raises(Invalid) as info:
            from_spec(FIGURES, _spec_with(spec, key, wrong), 6_000_000, prefix="items.0.")
        assert f"items.0.{key}" in [e.param for e in info.value.errors], wrong


def test_a_whole_float_past_an_integer_bound_names_the_bound() -> None:
    with pytest.raises(Invalid) as info:
        from_spec(FIGURES, {"figure": "histogram", "w": 1e20, "params": {"bins": 0.0}}, 6_000_000)
    messages = {e.param: e.message for e in info.value.errors}
    assert messages["w"].startswith("Input should be less than or equal to 3000")
    assert messages["params.bins"].startswith("Input should be greater than or equal to 1")
