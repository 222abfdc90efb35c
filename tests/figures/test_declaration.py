"""What a figure declares is checked when it registers: a start fails with a clear message
instead of every visitor getting a 500 later."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from pydantic import Field, ValidationError, create_model

from figserve.app import create_app
from figserve.figures import FIGURES, FigureParams, Registry, SeededParams
from figserve.figures.declaration import ALT_MAX, SIZE_MAX, SIZE_MIN, FigureDeclarationError
from figserve.figures.loading import FigureModuleError
from figserve.figures.registry import FigureSpec
from figserve.render import ImageOptions
from tests.support.usercode import UserFolder


def draw(fig: Figure, p: Any) -> None:
    fig.add_subplot().plot([0, 1])


class Labels(FigureParams):
    label: str | None = Field(None, max_length=12)
    n: int = Field(5, ge=1, le=100)
    kind: Literal["a", "bb"] = "a"
    when: dt.date = dt.date(2020, 1, 1)


class BadDefault(FigureParams):
    bins: int = Field(0, ge=1, le=10)


class Required(FigureParams):
    bins: int = Field(ge=1)


class Aliased(FigureParams):
    width: int = Field(1, alias="w")


class Underscored(FigureParams):
    n: int = Field(1, alias="_v")


async def draw_async(fig: Figure, p: Any) -> None:
    pass


def version_no_args() -> str:
    return "1"


def update_two(fig: Figure, handles: Any) -> None:
    pass


CASES: list[tuple[dict[str, Any], str]] = [
    ({"alt": "{label:>5}"}, "alt text '{label:>5}' fails for label=None: TypeError"),
    (
        {"alt": "{label[0]}", "params": create_model("T", __base__=FigureParams, label=(str, "a"))},
        "alt text '{label[0]}' fails for label='': IndexError",
    ),
    (
        {"alt": "{n:c}", "params": create_model("Big", __base__=FigureParams, n=(int, 1))},
        "n=-1000000000: Overflow",
    ),
    ({"alt": "{kind:d}"}, "fails for kind='a': ValueError"),
    ({"alt": "{colour}"}, "names 'colour', which is not one of its parameters"),
    ({"alt": "{} points"}, "name each placeholder"),
    ({"alt": "{n:>{n}}"}, "a format spec may not hold a placeholder"),
    ({"alt": "{n:>100000}"}, "widths and precisions of at most"),
    ({"alt": "{n:.999f}"}, "widths and precisions of at most"),
    ({"alt": "{n"}, "is not a valid template"),
    ({"alt": ""}, "alt= must be a non-empty text"),
    ({"params": BadDefault}, "default parameters are not valid (bins: Input should be greater"),
    ({"params": Required}, "every parameter needs a default; bins has none"),
    ({"params": Aliased}, "reserved parameter names ['w']"),
    ({"params": Underscored}, "parameter name '_v' must start with a letter"),
    ({"params": dict}, "params= must be a FigureParams"),
    ({"width": 10}, "width=10 must be a whole number of CSS pixels from 50 to 3000"),
    ({"height": 4000}, "height=4000 must be"),
    ({"width": 400.5}, "width=400.5 must be"),
    ({"draw": lambda fig: None}, "its draw function '<lambda>'(fig) must take 2 positional"),
    ({"draw": draw_async}, "its draw function must be a plain function, not async"),
    ({"version": version_no_args}, "its version function 'version_no_args'() must take 1"),
    ({"update": update_two}, "its update function 'update_two'(fig, handles) must take 3"),
    ({"version": "mtime"}, "version= must be a function"),
    ({"title": ""}, "title= must be a non-empty text"),
    ({"description": "d" * 3000}, "description= has 3000 characters"),
]


def spec_of(**changes: Any) -> FigureSpec:
    fields: dict[str, Any] = {
        "name": "labels",
        "title": "Labels",
        "description": "Some labels.",
        "params": Labels,
        "draw": draw,
        "alt": "{n} labels",
    }
    return FigureSpec(**{**fields, **changes})


@pytest.mark.parametrize(("changes", "message"), CASES, ids=[m[:30] for _, m in CASES])
def test_a_bad_declaration_fails_registration_naming_the_figure(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(FigureDeclarationError) as caught:
        Registry().add(spec_of(**changes))
    assert str(caught.value).startswith("figure 'labels': ")
    assert message in str(caught.value)


def test_a_good_declaration_registers() -> None:
    spec = spec_of(alt="{n} labels of kind {kind!r}, {label}, from {when:%Y}")
    Registry().add(spec)
    assert spec.alt_text(Labels(n=3)) == "3 labels of kind 'a', None, from 2020"


def test_the_default_size_bounds_are_the_image_options_bounds() -> None:
    w = ImageOptions.model_json_schema()["properties"]["w"]
    assert (w["minimum"], w["maximum"]) == (SIZE_MIN, SIZE_MAX)


def test_a_figure_module_with_a_failing_alt_text_stops_the_start(user_folder: UserFolder) -> None:
    user_folder.write(
        "badalt.py",
        """
        from pydantic import Field
        from figserve import FIGURES, FigureParams

        class P(FigureParams):
            label: str | None = Field(None, max_length=10)

        @FIGURES.figure("badalt", title="t", description="d", alt="{label:>5}", params=P)
        def badalt(fig, p):
            pass
        """,
    )
    with pytest.raises(FigureModuleError) as caught:
        create_app({"warm_up": False, "figures": "badalt"})
    message = str(caught.value)
    assert "module 'badalt'" in message and "badalt.py, line 7" in message
    assert "figure 'badalt': alt text '{label:>5}' fails for label=None" in message
    assert "badalt" not in FIGURES


def test_alt_text_never_raises_and_is_bounded_at_request_time() -> None:
    # A spec that skipped registration (built by hand): its alt text falls back to the
    # description rather than failing the page.
    broken = spec_of(alt="{label:>5}")
    assert broken.alt_text(Labels()) == "Some labels."
    long = spec_of(alt="{label}" + "x" * 2 * ALT_MAX)
    text = long.alt_text(Labels(label="y"))
    assert len(text) == ALT_MAX and text.endswith("\u2026")


# -- beyond the examples: generated models and templates -------------------------------------

SPECS = ["", "!r", ":>5", ":d", ":.2f", ":g", ":,", ":c", ":%", ":x", ":05", ":.3", "[0]", ".real"]


@st.composite
def field_and_values(draw_: st.DrawFn) -> tuple[Any, Any, st.SearchStrategy]:
    """A field (annotation, Field) of a generated model, and a strategy of its values."""
    kind = draw_(st.sampled_from(["int", "float", "str", "literal", "bool"]))
    optional = draw_(st.booleans())
    if kind == "int":
        low = draw_(st.none() | st.integers(-(10**7), 10**7))
        high = draw_(st.none() | st.integers(-(10**7), 10**7))
        if low is not None and high is not None and low > high:
            low, high = high, low
        default = low if low is not None else (high if high is not None else 0)
        annotation, values = int, st.integers(low, high)
        info = Field(default, ge=low, le=high)
    elif kind == "float":
        low = draw_(st.none() | st.floats(-1e6, 1e6))
        high = draw_(st.none() | st.floats(-1e6, 1e6))
        if low is not None and high is not None and low > high:
            low, high = high, low
        default = low if low is not None else (high if high is not None else 0.0)
        annotation = float
        values = st.floats(low, high, allow_nan=False, allow_infinity=False)
        info = Field(default, ge=low, le=high)
    elif kind == "str":
        most = draw_(st.none() | st.integers(0, 30))
        annotation, values = str, st.text("abW {}%", max_size=most if most is not None else 60)
        info = Field("", max_length=most)
    elif kind == "literal":
        members = draw_(st.lists(st.sampled_from(["a", "bb", "1", "x y"]), min_size=1, unique=True))
        annotation = Literal[tuple(members)]  # type: ignore[valid-type]
        values, info = st.sampled_from(members), Field(members[0])
    else:
        annotation, values, info = bool, st.booleans(), Field(False)
    if optional:
        annotation = annotation | None
        values = st.none() | values
    return annotation, info, values


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_a_registered_alt_text_formats_for_every_valid_parameter(data: st.DataObject) -> None:
    fields = data.draw(st.lists(field_and_values(), min_size=1, max_size=3))
    names = [f"p{i}" for i in range(len(fields))]
    model = create_model(
        "Generated",
        __base__=SeededParams,
        **{n: (a, info) for n, (a, info, _) in zip(names, fields, strict=True)},
    )
    placeholders = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
    template = " ".join(f"{{{n}{data.draw(st.sampled_from(SPECS))}}}" for n in placeholders)
    spec = spec_of(params=model, alt=template)
    try:
        Registry().add(spec)
    except FigureDeclarationError:
        return  # refused at start: no visitor ever meets it
    values = data.draw(
        st.fixed_dictionaries({n: v for n, (_, _, v) in zip(names, fields, strict=True)})
    )
    try:
        params = model.model_validate(values)
    except ValidationError:
        return
    template.format(**params.model_dump())  # the check at registration let no failure through
