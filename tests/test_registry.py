"""Adding a figure is one model and one function; everything else follows (issue 3)."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from pydantic import Field

from src.app import create_app
from src.figures import FIGURES, SeededParams, rng_for, title_field

from .conftest import decode


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
