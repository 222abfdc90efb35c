"""Margins that fit the texts without a second draw (``figserve.figures.layout.fit``).

Two promises, each checked against a real draw: no figure is drawn twice per image (matplotlib's
``Figure.draw`` is counted), and no tick label, axis label, title, offset text or legend that is
drawn reaches past the figure's edges, for the shipped figures and for figures of the shapes
people draw, over their parameters and over sizes from a thumbnail to a poster.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text

from figserve.figures import FIGURES
from figserve.figures.data import PlotParams, draw_table
from figserve.figures.layout import fit, fit_unless_laid_out
from figserve.figures.tables import Table
from figserve.figures.testing import new_figure
from figserve.render import MEDIA_TYPES, ImageOptions, encode, job_for
from figserve.render.encode import Drawing, RenderJob
from figserve.render.options import canvas_for

from .test_catalog import PROPERTY, accepted, params_for

SIZES = [(400, 300), (120, 80), (50, 50), (1200, 900), (2000, 120), (150, 900), (320, 240)]
TOLERANCE_PX = 0.5
# A failing figure is printed as found: shrinking redraws figures for minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def drawn_texts(fig: Figure) -> Iterator[Text | Legend]:
    """Every text and legend the last draw of ``fig`` drew (visible, not empty)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if not axis.get_visible():  # not drawn (the shared axis of a twin)
                continue
            yield from _drawn_tick_labels(axis)
            yield axis.get_offset_text()
            yield axis.label
        yield from (c for c in ax.get_children() if isinstance(c, Text))
        if ax.get_legend() is not None:
            yield ax.get_legend()
    yield from fig.texts
    yield from fig.legends


def _drawn_tick_labels(axis: Axis) -> Iterator[Text]:
    """The tick labels of ticks within the view (matplotlib keeps others, not drawn)."""
    low, high = sorted(axis.get_transform().transform(list(axis.get_view_interval())))
    slack = (high - low) * 1e-9
    for ticks in (axis.get_major_ticks(), axis.get_minor_ticks()):
        for tick in ticks:
            at = axis.get_transform().transform([tick.get_loc()])[0]
            if low - slack <= at <= high + slack:
                yield from (tick.label1, tick.label2)


def cut(fig: Figure) -> list[str]:
    """What a real draw of ``fig`` cut at its edges: texts whose boxes reach outside it."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    frame = fig.bbox
    out = []
    for item in drawn_texts(fig):
        if not item.get_visible() or (isinstance(item, Text) and not item.get_text()):
            continue
        box = item.get_window_extent(renderer)
        if (
            box.x0 < frame.x0 - TOLERANCE_PX
            or box.x1 > frame.x1 + TOLERANCE_PX
            or box.y0 < frame.y0 - TOLERANCE_PX
            or box.y1 > frame.y1 + TOLERANCE_PX
        ):
            name = item.get_text() if isinstance(item, Text) else "legend"
            out.append(f"{name!r} at {box.bounds} outside {frame.bounds}")
    return out


# --- the shipped figures ------------------------------------------------------------------------


@pytest.mark.property
@pytest.mark.parametrize("spec", list(FIGURES), ids=lambda s: s.name)
@settings(PROPERTY, max_examples=25, phases=NO_SHRINK)
@given(data=st.data(), size=st.sampled_from(SIZES))
def test_no_shipped_figure_cuts_a_text(spec, data: st.DataObject, size) -> None:
    params = accepted(spec, data.draw(params_for(spec.params)))
    fig = new_figure(*size)
    spec.draw(fig, params)
    assert fit(fig)
    assert cut(fig) == []


# --- figures of the shapes people draw ----------------------------------------------------------

WORDS = st.text(st.sampled_from("abcdefghij XYZ()-_0123456789µ°\u03c3"), min_size=1, max_size=40)


def maybe(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | values


AXES = st.fixed_dictionaries(
    {
        "centre": st.sampled_from([0.0, -1e6, 1e9, 123456.789, -0.004]),
        "spread": st.sampled_from([1e-6, 1e-3, 1.0, 1e4, 1e12]),
        "lines": st.integers(1, 4),
        "xlabel": maybe(WORDS),
        "ylabel": maybe(WORDS),
        "title": maybe(WORDS),
        "bar_label": maybe(WORDS),
        "twin_label": maybe(WORDS),
    }
)


@st.composite
def recipes(draw: st.DrawFn) -> dict[str, Any]:
    """One axes (maybe with a twin), a grid of subplots (maybe sharing axes), or an image with
    a colour bar, with data whose tick labels are long, negative, tiny or huge (offset texts),
    labels, titles and legends: as a recipe, which a failing example prints."""
    shape = draw(st.sampled_from(["one", "grid", "colorbar"]))
    grid = shape == "grid"
    rows, cols = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if grid else (1, 1)
    return {
        "size": draw(st.sampled_from(SIZES)),
        "dpi": draw(st.sampled_from([100.0, 200.0])),
        "shape": shape,
        "grid": (rows, cols),
        "shared": grid and draw(st.booleans()),
        "axes": [draw(AXES) for _ in range(rows * cols)],
        "legend_columns": None if shape == "colorbar" else draw(maybe(st.integers(1, 4))),
        "suptitle": draw(maybe(WORDS)),
        "supylabel": draw(maybe(WORDS)),
    }


def user_figure(recipe: dict[str, Any]) -> Figure:
    fig = new_figure(*recipe["size"], dpi=recipe["dpi"])
    shared = recipe["shared"]
    axes = fig.subplots(*recipe["grid"], squeeze=False, sharex=shared, sharey=shared).ravel()
    xs = np.linspace(0, 1, 20)
    for ax, a in zip(axes, recipe["axes"], strict=True):
        if recipe["shape"] == "colorbar":
            image = ax.imshow(a["centre"] + a["spread"] * np.outer(xs, xs), aspect="auto")
            bar = fig.colorbar(image, ax=ax)
            if a["bar_label"] is not None:
                bar.set_label(a["bar_label"])
        else:
            for k in range(a["lines"]):
                ax.plot(a["centre"] + a["spread"] * xs, k - a["spread"] * xs**2, label=f"s{k}")
        if a["xlabel"] is not None:
            ax.set_xlabel(a["xlabel"])
        if a["ylabel"] is not None:
            ax.set_ylabel(a["ylabel"])
        if a["title"] is not None:
            ax.set_title(a["title"])
        if recipe["shape"] == "one" and a["twin_label"] is not None:
            twin = ax.twinx()  # a second y axis on the right, in the same cell
            twin.plot(xs, a["centre"] - a["spread"] * xs, color="C3")
            twin.set_ylabel(a["twin_label"])
    if recipe["legend_columns"] is not None:
        fig.legend(loc="outside lower center", ncols=recipe["legend_columns"], frameon=False)
    if recipe["suptitle"] is not None:
        fig.suptitle(recipe["suptitle"])
    if recipe["supylabel"] is not None:
        fig.supylabel(recipe["supylabel"])
    return fig


@pytest.mark.property
@settings(PROPERTY, max_examples=80, phases=NO_SHRINK)
@given(recipe=recipes())
def test_fit_never_leaves_a_text_cut(recipe: dict[str, Any]) -> None:
    fig = user_figure(recipe)
    assert fit(fig)
    assert cut(fig) == []


@pytest.mark.parametrize("size", [(400, 300), (1200, 900)])
@pytest.mark.parametrize("title", ["short", "a long title that reaches the right side of the axes"])
def test_a_title_keeps_clear_of_a_twins_offset_text(size, title) -> None:
    # matplotlib moves a title above the offset text of a twin's y axis when they would meet.
    fig = new_figure(*size, dpi=200)
    ax = fig.add_subplot()
    xs = np.linspace(0, 1, 20)
    ax.plot(1e9 + 1e4 * xs, xs)
    ax.set_title(title)
    twin = ax.twinx()
    twin.plot(xs, 123456.789 - 1e-6 * xs)
    assert fit(fig)
    assert cut(fig) == []


def test_an_image_without_axes_fills_the_figure() -> None:
    fig = new_figure(400, 300)
    ax = fig.add_subplot()
    ax.imshow(np.ones((3, 4)), aspect="auto")
    ax.set_axis_off()
    assert fit(fig)
    box = ax.get_position()
    assert box.x0 < 0.03 and box.y0 < 0.03 and box.x1 > 0.97 and box.y1 > 0.97  # the edge: 4 pt


def test_room_is_taken_only_where_texts_are() -> None:
    # Labels on the left and bottom take room there; the top and right keep a few points.
    fig = new_figure(400, 300)
    ax = fig.add_subplot()
    ax.plot([0, 1e6], [0, 1])
    ax.set_ylabel("a rather long label")
    fit(fig)
    box = ax.get_position()
    assert box.x0 > 0.12 and box.y0 > 0.08
    assert box.x1 > 0.95 and box.y1 > 0.95  # the top tick label overhangs a little


@pytest.mark.parametrize("size", [(120, 80), (50, 50)])
def test_a_figure_too_small_for_its_texts_drops_them_instead_of_cutting(size) -> None:
    fig = new_figure(*size)
    ax = fig.add_subplot()
    ax.plot(range(10), label="a line")
    ax.set_xlabel("a label far too long for this figure")
    ax.set_title("a title far too long for this figure")
    fig.legend(loc="outside lower center")
    fit(fig)
    assert not ax.xaxis.label.get_visible() and not ax.title.get_visible()
    assert not fig.legends[0].get_visible()
    assert cut(fig) == []


def test_fit_depends_on_the_figure_not_on_earlier_calls() -> None:
    # A figure fitted when tiny texts dropped, then given short texts and fitted again, comes
    # out as one drawn with the short texts in the first place.
    def figure(label: str) -> Figure:
        fig = new_figure(200, 150)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1])
        ax.set_title(label)
        return fig

    kept = figure("a title much too long to fit into this small figure at all")
    fit(kept)
    assert not kept.axes[0].title.get_visible()
    kept.axes[0].set_title("short")
    fit(kept)
    fresh = figure("short")
    fit(fresh)
    assert kept.axes[0].title.get_visible()
    assert vars(kept.subplotpars) == vars(fresh.subplotpars)
    assert image(kept) == image(fresh)


def image(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="rgba", dpi=fig.dpi)
    return buf.getvalue()


@pytest.mark.parametrize(
    "make",
    [
        lambda fig: fig.set_layout_engine("constrained") or fig.add_subplot(),
        lambda fig: fig.add_axes((0.1, 0.1, 0.8, 0.8)),
        lambda fig: fig.add_subplot(projection="polar"),
        lambda fig: fig.add_subplot(fig.add_gridspec(1, 1, left=0.3)[0]),
        lambda fig: fig.subfigures(1, 2)[0].add_subplot(),
        lambda fig: fig.add_subplot() and fig.subplots_adjust(left=0.3),
        lambda fig: (fig.add_subplot().set_ylabel("y"), fig.tight_layout()),
    ],
    ids=[
        "layout engine",
        "add_axes",
        "polar",
        "own grid margins",
        "subfigures",
        "subplots_adjust",
        "tight_layout",
    ],
)
def test_shapes_fit_does_not_handle_are_left_alone(make: Any) -> None:
    fig = new_figure(400, 300)
    make(fig)
    before = vars(fig.subplotpars).copy()
    assert not fit(fig)
    assert vars(fig.subplotpars) == before


# --- one draw per image -------------------------------------------------------------------------


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every ``Figure.draw`` call, by figure."""
    calls: list[Figure] = []
    original = Figure.draw

    def counted(self: Figure, renderer: Any) -> None:
        calls.append(self)
        original(self, renderer)

    monkeypatch.setattr(Figure, "draw", counted)
    return calls


@pytest.mark.parametrize("fmt", list(MEDIA_TYPES))
@pytest.mark.parametrize("spec", list(FIGURES), ids=lambda s: s.name)
@pytest.mark.parametrize("size", [(400, 300), (120, 80)])
def test_every_shipped_figure_is_drawn_once_per_image(spec, fmt, size, draws) -> None:
    params = spec.params(**({"seed": 1} if spec.random else {}), **_title(spec))
    job = job_for(spec, params, ImageOptions(format=fmt, w=size[0], h=size[1]), 10**8)
    assert encode(job)
    assert len(draws) == 1


def _title(spec) -> dict[str, str]:
    return {"title": "A title"} if "title" in spec.params.model_fields else {}


@pytest.mark.parametrize("kind", ["line", "scatter", "bar", "hist"])
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_plots_of_uploaded_tables_are_drawn_once_per_image(kind, fmt, draws) -> None:
    table = Table({"x": np.arange(12.0), "a": np.arange(12.0) ** 2, "b": -np.arange(12.0)})
    params = PlotParams(kind=kind, y=None if kind == "hist" else "a,b", title="Uploaded")
    canvas = canvas_for(ImageOptions(format=fmt, w=640, h=400), 10**8)
    assert encode(RenderJob(Drawing(draw_table, (table, params)), canvas, fmt, "plot"))
    assert len(draws) == 1


def test_the_count_sees_a_second_draw(draws) -> None:
    # A layout engine makes savefig draw to measure, then draw again: counted as two.
    fig = Figure(layout="constrained")
    fig.add_subplot().plot([1, 2])
    fig.savefig(io.BytesIO(), format="png")
    assert len(draws) == 2


def test_the_renderer_leaves_a_figure_with_a_layout_engine_to_it() -> None:
    fig = Figure(layout="constrained")
    fig.add_subplot()
    assert not fit_unless_laid_out(fig)
