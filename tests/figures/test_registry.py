"""The registry: names, and the one rule for text a figure draws."""

from __future__ import annotations

import io
import unicodedata
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from pydantic import Field, ValidationError

from figserve.app import create_app
from figserve.figures import FIGURES, FigureParams, Registry, SeededParams, rng_for, title_field
from figserve.figures.registry import FigureSpec, text_problem
from tests.conftest import decode

from .test_catalog import FONT_CHARS, PROPERTY


class Labelled(FigureParams):
    """A user figure's model: every str field follows the rule, not only titles."""

    title: str = title_field()
    label: str = Field("x", max_length=20)
    note: str | None = None


def draw_text(text: str, fmt: str) -> None:
    fig = Figure(figsize=(2, 1), dpi=25)
    fig.text(0.1, 0.5, text, parse_math=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig.savefig(io.BytesIO(), format=fmt)


def test_every_character_the_rule_accepts_draws_in_every_format() -> None:
    # Each accepted character of the font, alone and after a letter, in one text per format.
    accepted = [c for c in FONT_CHARS if text_problem("a" + c) is None]
    assert len(accepted) > 5000
    assert all(text_problem(c) is None for c in accepted if unicodedata.category(c)[0] != "M")
    text = "a" + "".join(accepted)
    lines = "\n".join(text[i : i + 100] for i in range(0, len(text), 100))
    for fmt in ("png", "svg", "pdf"):
        fig = Figure(figsize=(4, 3), dpi=25)
        fig.text(0, 0, lines, parse_math=False, fontsize=2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fig.savefig(io.BytesIO(), format=fmt)


@settings(PROPERTY, max_examples=60)
@given(st.text(max_size=12) | st.text(st.sampled_from(FONT_CHARS), max_size=12))
@example("\ufeff")
@example("a\u200b")
@example("\u0301\u0301")
@example("\U0001f600 \u00a0x\u0301")
def test_text_is_refused_or_draws_in_every_format_without_a_warning(text: str) -> None:
    problem = text_problem(text)
    for field in ("title", "label", "note"):
        try:
            Labelled.model_validate({field: text})
        except ValidationError as exc:
            ((err),) = exc.errors()
            assert (err["loc"], err["msg"]) == ((field,), problem), err
        else:
            assert problem is None
    if problem is None:
        for fmt in ("png", "svg", "pdf"):
            draw_text(text, fmt)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a\u200bb", "U+200B (ZERO WIDTH SPACE) cannot be drawn (a control or invisible char"),
        ("\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE) cannot be drawn (a control or invisible"),
        ("a\nb", "U+000A cannot be drawn (a control or invisible character)"),
        ("\ue000", "U+E000 cannot be drawn (a control or invisible character)"),
        ("a\u2028b", "U+2028 (LINE SEPARATOR) cannot be drawn"),
        ("\u0301a", "U+0301 (COMBINING ACUTE ACCENT) must follow the character it marks"),
        ("ok \u4e2d", "U+4E2D (CJK UNIFIED IDEOGRAPH-4E2D) cannot be drawn (the figure font has"),
        ("\U0010fffd", "U+10FFFD cannot be drawn"),
    ],
)
def test_a_refusal_names_the_first_character_at_fault(text: str, problem: str) -> None:
    assert (text_problem(text) or "").startswith(problem)


def test_the_rule_leaves_defaults_and_choices_alone() -> None:
    assert Labelled().label == "x"
    assert FIGURES.get("heatmap").params(cmap="magma").cmap == "magma"
    with pytest.raises(ValidationError):
        Labelled(title="t" * 81)


def test_registry_rejects_reserved_and_duplicate_names() -> None:
    registry = Registry()

    class Bad(SeededParams):
        w: int = 1

    spec = FIGURES.get("normal")
    with pytest.raises(ValueError, match="reserved"):
        registry.add(FigureSpec("bad", "t", "d", Bad, spec.draw, "alt"))
    registry.add(spec)
    clash = FigureSpec("normal", "t", "d", SpiralParams, spiral, "alt")
    with pytest.raises(ValueError) as caught:
        registry.add(clash)
    # Both figures are named, each with where it was declared.
    assert str(caught.value) == (
        f"figure 'normal' of module {__name__} clashes with the figure 'normal' of "
        "figserve.figures.scatter (shipped with figserve): give one of them another name"
    )


class SpiralParams(SeededParams):
    turns: int = Field(3, ge=1, le=20, description="Number of turns.")
    title: str = title_field()


def spiral(fig: Figure, p: SpiralParams) -> None:
    t = np.linspace(0, 2 * np.pi * p.turns, 500)
    r = t + rng_for(p).normal(0, 0.3, t.size)
    fig.add_subplot(projection="polar").plot(t, r)


@pytest.fixture
async def app():
    registry = FIGURES.copy()
    registry.figure(
        "spiral",
        title="Spiral",
        params=SpiralParams,
        description="A noisy spiral.",
        alt="Spiral of {turns} turns",
    )(spiral)
    application = create_app({"registry": registry, "warm_up": False})
    async with application.test_app():
        yield application


async def test_a_new_figure_gets_every_surface(client):
    image = await client.get("/figures/spiral.png?turns=5&seed=1&w=300&h=300")
    assert image.status_code == 200
    assert decode(await image.get_data()).size == (300, 300)
    assert (await client.get("/figures/spiral.svg?turns=21")).status_code == 400
    gallery = await (await client.get("/")).get_data(as_text=True)
    assert 'action="/gallery/spiral"' in gallery and 'alt="Spiral of 3 turns"' in gallery
    page = await client.get("/gallery/spiral?turns=4")
    assert page.status_code == 200
    catalog = await (await client.get("/api/figures")).get_json()
    assert "turns" in catalog["figures"][-1]["params"]["properties"]
    schema = await (await client.get("/openapi.json")).get_json()
    assert "/figures/spiral.{fmt}" in schema["paths"]
    rendered = await client.post("/api/render", json={"figure": "spiral", "params": {"turns": 2}})
    assert rendered.status_code == 200


async def test_the_shipped_catalog_is_not_changed_by_a_copy(client):
    assert "spiral" not in FIGURES
