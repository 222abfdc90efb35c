"""The shipped figures: whatever validation accepts draws, in every format, without a warning.

Parameters are generated from each model's own bounds (every numeric field over its whole range,
extremes included; every choice; dates over their range; arbitrary text), so a new figure or a
changed bound is covered without editing this file. Drawing goes straight to a ``Figure``.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import typing
import warnings
from typing import Any

import annotated_types as at
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from PIL import Image
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from figserve.figures import FIGURES, FigureParams
from figserve.figures.catalog import NormalParams, shared_window
from figserve.figures.layout import fit_unless_laid_out
from figserve.figures.registry import FigureSpec
from figserve.figures.scatter import least_window

SPECS = list(FIGURES)
FORMATS = ["png", "svg", "pdf", "webp", "jpeg"]
# Characters of the figure font, so that generated text is often accepted (and then drawn).
_FONT = FT2Font(font_manager.findfont(font_manager.FontProperties()))
FONT_CHARS = [chr(c) for c in sorted(_FONT.get_charmap())]


def draw(
    spec: FigureSpec, params: FigureParams, fmt: str = "png", size=(4.0, 3.0), dpi=25
) -> bytes:
    """Draw and save as the server would; any warning fails. 4x3 inches at 25 dpi is the
    400x300 layout drawn at 100x75 pixels."""
    fig = Figure(figsize=size, dpi=dpi)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.draw(fig, params)
        fit_unless_laid_out(fig)  # as the renderer does
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt)
    return buf.getvalue()


def _bounds(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, at.Ge):
            out["lo"] = item.ge
        elif isinstance(item, at.Gt):
            out["lo"], out["open_lo"] = item.gt, True
        elif isinstance(item, at.Le):
            out["hi"] = item.le
        elif isinstance(item, at.Lt):
            out["hi"], out["open_hi"] = item.lt, True
        elif isinstance(item, at.MaxLen):
            out["max_len"] = item.max_length
    return out


def texts(max_size: int | None) -> st.SearchStrategy[str]:
    """Arbitrary text, and text made of the font's characters (often drawable)."""
    return st.text(max_size=max_size) | st.text(st.sampled_from(FONT_CHARS), max_size=max_size)


def _values(kind: Any, metadata: list[Any]) -> st.SearchStrategy[Any]:
    b = _bounds(metadata)
    if typing.get_origin(kind) is typing.Literal:
        return st.sampled_from(typing.get_args(kind))
    if kind is bool:
        return st.booleans()
    if kind is int:
        lo = b.get("lo", -(2**63)) + b.get("open_lo", False)
        hi = b.get("hi", 2**63) - b.get("open_hi", False)
        return st.sampled_from([lo, hi]) | st.integers(lo, hi)
    if kind is float:
        lo, hi = float(b.get("lo", -1e308)), float(b.get("hi", 1e308))
        first = math.nextafter(lo, math.inf) if b.get("open_lo") else lo
        last = math.nextafter(hi, -math.inf) if b.get("open_hi") else hi
        inside = st.floats(first, last, allow_nan=False, allow_infinity=False)
        return st.sampled_from([first, last]) | inside
    if kind is dt.date:
        lo, hi = b.get("lo", dt.date.min), b.get("hi", dt.date.max)
        return st.sampled_from([lo, hi]) | st.dates(lo, hi)
    if kind is str:
        return texts(b.get("max_len"))
    raise TypeError(f"no strategy for parameters of type {kind!r}: add one here")


def field_values(info: FieldInfo) -> st.SearchStrategy[Any]:
    args = typing.get_args(info.annotation)
    if type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return st.none() | _values(inner, info.metadata)
    return _values(info.annotation, info.metadata)


def params_for(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    values = st.fixed_dictionaries(
        {name: field_values(info) for name, info in model.model_fields.items()}
    )
    if {"lo", "hi"} <= set(model.model_fields):
        # Ends of a range are given together, the lower first: mostly draw such pairs (the
        # model refuses the others, which the tests then set aside).
        values = values.map(_ordered_ends) | values
    return values


def _ordered_ends(values: dict[str, Any]) -> dict[str, Any]:
    lo, hi = values["lo"], values["hi"]
    if lo is None or hi is None:
        return {**values, "lo": None, "hi": None}
    return {**values, "lo": min(lo, hi), "hi": max(lo, hi)}


def accepted(spec: FigureSpec, values: dict[str, Any]) -> FigureParams:
    """The validated parameters. A refusal is the other allowed outcome: it must name what is
    wrong, and the example is set aside (``assume``), so each test draws as many accepted
    sets as it asks for, and hypothesis fails its health check if few are accepted."""
    try:
        return spec.params.model_validate(values)
    except ValidationError as exc:
        assert all(err["loc"] and err["msg"] for err in exc.errors())
        assume(False)
        raise


PROPERTY = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@pytest.mark.property
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(PROPERTY, max_examples=12)
@given(data=st.data())
def test_whatever_validation_accepts_draws_as_png(spec: FigureSpec, data: st.DataObject) -> None:
    params = accepted(spec, data.draw(params_for(spec.params)))
    assert draw(spec, params).startswith(b"\x89PNG")


@pytest.mark.property
@pytest.mark.parametrize("fmt", FORMATS[1:])
@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
@settings(PROPERTY, max_examples=2)
@given(data=st.data())
def test_whatever_validation_accepts_draws_in_every_format(
    spec: FigureSpec, fmt: str, data: st.DataObject
) -> None:
    params = accepted(spec, data.draw(params_for(spec.params)))
    assert draw(spec, params, fmt)


# --- the classes an outside review found, each as an example ----------------------------------


@pytest.mark.parametrize(
    ("name", "values", "param"),
    [
        # Series crossing the ends of the calendar matplotlib can draw.
        ("timeseries", {"start": "0001-01-01", "days": 300}, "start"),
        ("timeseries", {"start": "9999-12-01", "days": 10}, "start"),
        ("timeseries", {"start": "9899-12-31", "days": 2}, "start"),
        ("timeseries", {"start": "9890-01-01", "days": 2}, "start"),
        # Dates only as YYYY-MM-DD (not timestamps, not times).
        ("timeseries", {"start": "1679616000"}, "start"),
        ("timeseries", {"start": "2026-01-01T00:00"}, "start"),
        # Spreads too small for float64 around the mean: numpy cannot bin the sample.
        ("histogram", {"mean": 1e6, "std": 1e-10, "n": 10}, "std"),
        ("histogram", {"mean": 0, "std": 9e-4, "n": 10}, "std"),
        ("histogram", {"mean": 0, "std": 5e-324}, "std"),
        # Characters the PDF writer or the font cannot draw.
        ("histogram", {"title": "a\u200bb"}, "title"),
        ("timeseries", {"title": "\ufeff"}, "title"),
        ("heatmap", {"title": "\u0301"}, "title"),
        ("waves", {"title": "\u4e2d\u6587"}, "title"),
        ("histogram", {"title": "\ue000"}, "title"),
        ("histogram", {"title": "a\u2028b"}, "title"),
        # The ends of the scatter's window: together, in order, far enough apart for floats.
        ("normal", {"lo": 1}, "hi"),
        ("normal", {"hi": 1}, "hi"),
        ("normal", {"lo": 2, "hi": 1}, "hi"),
        ("normal", {"lo": 1, "hi": 1}, "hi"),
        ("normal", {"lo": 1e6, "hi": 1e6 + 1e-6}, "hi"),
        ("normal", {"lo": -1e-201, "hi": 1e-201}, "hi"),
        ("normal", {"lo": -2e7, "hi": 1}, "lo"),
    ],
)
def test_what_cannot_draw_is_refused_naming_the_parameter(name, values, param) -> None:
    with pytest.raises(ValidationError) as info:
        FIGURES.get(name).params.model_validate(values)
    assert [err["loc"] for err in info.value.errors()] == [(param,)]


@pytest.mark.parametrize(
    ("title", "message"),
    [
        ("a\u200bb", "U+200B (ZERO WIDTH SPACE) cannot be drawn"),
        ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE) cannot be drawn"),
        ("\u0301", "U+0301 (COMBINING ACUTE ACCENT) must follow the character it marks"),
        ("x\u4e2d", "U+4E2D (CJK UNIFIED IDEOGRAPH-4E2D) cannot be drawn"),
    ],
)
def test_refused_text_names_the_character(title: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        FIGURES.get("histogram").params(title=title)
    assert info.value.errors()[0]["msg"].startswith(message)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("timeseries", {"start": "0100-01-01", "days": 3650, "seed": 1}),
        ("timeseries", {"start": "0100-01-01", "days": 2, "seed": 1}),
        ("timeseries", {"start": "9889-12-31", "days": 3650, "seed": 1}),
        ("timeseries", {"start": "9889-12-31", "days": 2, "seed": 1}),
        ("timeseries", {"volatility": 0, "drift": 0, "seed": 1}),
        ("histogram", {"mean": 1e6, "std": 1e-3, "n": 10, "bins": 200, "seed": 1}),
        ("histogram", {"mean": -1e6, "std": 1e6, "n": 100_000, "bins": 1, "seed": 1}),
        ("normal", {"mean": 1e6, "var": 5e-324, "seed": 1}),
        ("normal", {"mean": 0, "var": 5e-324, "n": 1, "seed": 1}),
        ("heatmap", {"rows": 1, "cols": 1, "smooth": 10, "seed": 1}),
        ("waves", {"frequency": 20, "damping": 5, "components": 8}),
        ("histogram", {"title": "x\u0301 \u00a0\U0001f600 $\\frac{$", "seed": 1}),
    ],
)
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_edges_of_the_allowed_range_draw(name, values, fmt) -> None:
    spec = FIGURES.get(name)
    assert draw(spec, spec.params.model_validate(values), fmt)


# --- what a person sees ---------------------------------------------------------------------------


def _laid_out(name: str, size: tuple[float, float], **values: Any) -> Figure:
    spec = FIGURES.get(name)
    fig = Figure(figsize=size, dpi=100)
    spec.draw(fig, spec.params(**values))
    fit_unless_laid_out(fig)
    fig.savefig(io.BytesIO(), format="png")  # places the texts
    return fig


@pytest.mark.parametrize("name", ["histogram", "timeseries"])
@pytest.mark.parametrize("size", [(4.0, 3.0), (3.2, 2.4)])  # default size, gallery preview
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_legends_never_cover_the_data(name: str, size, seed: int) -> None:
    fig = _laid_out(name, size, seed=seed, title="A title")
    (ax,) = fig.axes
    legends = [*fig.legends, *(a.get_legend() for a in fig.axes if a.get_legend())]
    assert legends, "the figure has a legend"
    for legend in legends:
        box = legend.get_window_extent()
        assert not box.overlaps(ax.get_window_extent())
        assert fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1 and fig.bbox.y0 <= box.y0


@pytest.mark.parametrize("size", [(4.0, 3.0), (3.2, 2.4)])
@pytest.mark.parametrize("values", [{"seed": 1}, {"seed": 2, "n": 10}, {"seed": 3, "n": 10_000}])
def test_the_scatter_fills_its_figure_and_keeps_markers_whole(size, values) -> None:
    fig = _laid_out("normal", size, **values)
    (ax,) = fig.axes
    box, frame = ax.get_window_extent(), fig.bbox
    # No empty strip on the right or at the top: tick labels take the left and the bottom,
    # and the right holds at most the overhang of the last x tick label.
    labels = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    overhang = max(0.0, *(b.x1 - box.x1 for b in labels))
    assert frame.x1 - box.x1 <= overhang + 0.03 * frame.width
    assert frame.y1 - box.y1 <= 0.03 * frame.height
    # Every hexagon lies wholly inside the axes: its centre is a marker radius from each edge.
    radius = math.sqrt(100) / 2 * fig.dpi / 72
    centres = ax.transData.transform(ax.collections[0].get_offsets())
    assert (centres[:, 0] - box.x0 >= radius).all() and (box.x1 - centres[:, 0] >= radius).all()
    assert (centres[:, 1] - box.y0 >= radius).all() and (box.y1 - centres[:, 1] >= radius).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mean=st.floats(min_value=-1e6, max_value=1e6),
    var=st.floats(min_value=1e-3, max_value=1e6),
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([(4.0, 3.0), (3.2, 2.4), (6.0, 4.5), (2.0, 1.5)]),
)
def test_the_scatter_never_cuts_a_tick_label(mean, var, seed, size) -> None:
    # Its margins are measured from the labels before drawing, not by a layout engine.
    fig = _laid_out("normal", size, mean=mean, var=var, seed=seed)
    (ax,) = fig.axes
    texts = [ax.xaxis.get_offset_text(), ax.yaxis.get_offset_text()]
    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        low, high = sorted((low, high))
        ticks = zip(axis.get_ticklabels(), axis.get_ticklocs(), strict=True)
        texts += [t for t, v in ticks if low <= v <= high]
    for text in texts:
        if text.get_text():
            box = text.get_window_extent()
            assert fig.bbox.x0 - 0.5 <= box.x0 and box.x1 <= fig.bbox.x1 + 0.5, text.get_text()
            assert fig.bbox.y0 - 0.5 <= box.y0 and box.y1 <= fig.bbox.y1 + 0.5, text.get_text()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_figure_draws_something_at_its_default_size(spec: FigureSpec) -> None:
    params = spec.params(**({"seed": 3} if spec.random else {}))
    data = draw(spec, params, size=(spec.width / 100, spec.height / 100), dpi=200)
    image = Image.open(io.BytesIO(data))
    assert image.size == (spec.width * 2, spec.height * 2)
    # Something was drawn: the image is not one flat colour.
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 10


@pytest.mark.parametrize("spec", [s for s in SPECS if s.random], ids=lambda s: s.name)
def test_a_seed_makes_a_figure_reproducible(spec: FigureSpec) -> None:
    assert draw(spec, spec.params(seed=7)) == draw(spec, spec.params(seed=7))
    assert draw(spec, spec.params(seed=7)) != draw(spec, spec.params(seed=8))
    assert draw(spec, spec.params()) != draw(spec, spec.params())


def test_user_text_is_not_parsed_as_math() -> None:
    # A malformed math expression would raise if mathtext parsed it.
    spec = FIGURES.get("histogram")
    assert draw(spec, spec.params(title=r"$\frac{", seed=1), "pdf")


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.floats(-1e6, 1e6), st.floats(1e-300, 1e6, exclude_min=False)),
        min_size=1,
        max_size=6,
    )
)
def test_a_shared_window_is_one_the_scatter_takes(pairs) -> None:
    # Whatever means and spreads a page shows, their window is a valid lo and hi.
    lo, hi = shared_window(pairs)
    params = NormalParams(lo=lo, hi=hi)
    assert params.lo < params.hi
    for mean, _ in pairs:  # it holds every mean, unless floats could not split the window
        assert lo <= mean <= hi or hi - lo <= 4 * least_window(lo, hi)
