"""Warm figures: a figure kept and moved to new parameters by its update path is, byte for byte,
the figure drawn fresh for them, in every format, after any sequence of updates.

Sequences, not single steps: what an update leaves behind (ticks made for a longer axis, a
legend of more entries, a colour bar's range, a date axis' ticks, a title that was there)
shows only in later steps. Each step encodes the kept figure in a format of its own, as a
render process does, and the bytes are those the renderer serves (its canvas and encoders).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydantic import Field

from figserve.figures import FIGURES, FigureParams, title_field
from figserve.figures.registry import FigureSpec, Registry
from figserve.figures.testing import assert_update_matches
from figserve.render import ImageOptions, encode, job_for, warm
from figserve.render.encode import draw, fit_margins, render_warm, save

from .test_catalog import PROPERTY, accepted, params_for

WARM = [spec for spec in FIGURES if spec.update is not None]
SIZES = [(400, 300), (120, 80), (1200, 900), (320, 240)]
# A failing sequence is printed as found: shrinking redraws figures for minutes.
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def test_every_shipped_figure_has_an_update_path() -> None:
    assert [spec.name for spec in WARM] == [spec.name for spec in FIGURES]


@pytest.mark.property
@pytest.mark.parametrize("spec", WARM, ids=lambda s: s.name)
@settings(PROPERTY, max_examples=6, phases=NO_SHRINK)
@given(
    data=st.data(),
    size=st.sampled_from(SIZES),
    steps=st.integers(2, 5),
)
def test_updates_give_the_bytes_of_a_fresh_draw(spec: FigureSpec, data, size, steps) -> None:
    # As a render process does it (render/encode.py): draw and keep, then update, fit, save.
    kept: Figure | None = None
    handles = None
    for step in range(steps):
        params = accepted(spec, data.draw(params_for(spec.params), label=f"params {step}"))
        if spec.random and params.seed is None:  # unseeded: every draw a new sample
            params = params.model_copy(update={"seed": step})
        fmt = data.draw(st.sampled_from(["png", "svg"]), label=f"format {step}")
        job = job_for(spec, params, ImageOptions(w=size[0], h=size[1], format=fmt), 10**8)
        if kept is None:
            kept, handles = draw(job)
            if data.draw(st.booleans(), label="kept with its own Agg canvas"):
                FigureCanvasAgg(kept)  # a render process may keep the canvas (and renderer)
        else:
            handles = spec.update(kept, handles, params)
            fit_margins(kept)
        fresh, _ = draw(job)
        assert save(kept, job, 6) == save(fresh, job, 6), (step, fmt)


@pytest.fixture
def warm_process() -> Iterator[None]:
    """This process keeps figures, as a render process does; and keeps none afterwards."""
    warm.install(4)
    yield
    warm.install(0)


@pytest.mark.parametrize("spec", WARM, ids=lambda s: s.name)
def test_the_renderers_kept_figures_give_fresh_bytes(spec: FigureSpec, warm_process) -> None:
    seeded = {"seed": 9} if spec.random else {}
    titled = {"title": "A title"} if "title" in spec.params.model_fields else {}
    steps = [spec.params(**seeded), spec.params(**seeded, **titled), spec.params(**seeded)]
    outcomes = []
    for params, fmt in zip(steps, ["png", "svg", "png"], strict=True):
        job = job_for(spec, params, ImageOptions(format=fmt), 10**8)
        meta: dict[str, object] = {}
        assert render_warm(job, 6, meta) == encode(job, 6)
        outcomes.append(meta["warm"])
    assert outcomes == ["miss", "hit", "hit"]


@pytest.mark.parametrize("spec", WARM, ids=lambda s: s.name)
def test_updates_match_in_pdf_too(spec: FigureSpec) -> None:
    seeded = {"seed": 5} if spec.random else {}
    titled = "title" in spec.params.model_fields
    sequence = [
        spec.params(**seeded),
        spec.params(**seeded, **({"title": "A title"} if titled else {})),
        spec.params(**{k: v + 1 for k, v in seeded.items()}),
    ]
    assert_update_matches(spec, sequence, formats=("pdf",), sizes=((400, 300),))


# --- the public helper catches what an update forgets ----------------------------------------


class Titled(FigureParams):
    title: str = title_field()
    height: float = Field(1.0, ge=0.1, le=10)


def _build(fig: Figure):
    ax = fig.add_subplot()
    (line,) = ax.plot([0, 1], [0, 1])
    return ax, line


def _good_update(fig: Figure, handles, p: Titled):
    ax, line = handles
    line.set_ydata([0, p.height])
    ax.set_ylim(0, p.height)
    ax.set_title(p.title, parse_math=False)
    return handles


def _forgetful_update(fig: Figure, handles, p: Titled):
    ax, line = handles
    line.set_ydata([0, p.height])
    ax.set_ylim(0, p.height)  # the title is never changed
    return handles


def _draw(fig: Figure, p: Titled):
    handles = _build(fig)
    handles[0].set_title(p.title, parse_math=False)
    return _good_update(fig, handles, p)


def _spec(update) -> FigureSpec:
    registry = Registry()
    registry.figure("line", title="Line", description="A line.", params=Titled, update=update)(
        _draw
    )
    return registry.get("line")


def test_the_helper_passes_an_update_that_does_everything_a_draw_does() -> None:
    steps = [Titled(), Titled(title="Now titled", height=3), Titled()]
    assert_update_matches(_spec(_good_update), steps)


def test_the_helper_names_the_step_an_update_gets_wrong() -> None:
    steps = [Titled(), Titled(height=2), Titled(title="Now titled")]
    with pytest.raises(AssertionError, match=r"'line' at 400x300, png: .* step 2"):
        assert_update_matches(_spec(_forgetful_update), steps)
