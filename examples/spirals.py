"""A figure module of your own: ``FIGSERVE_FIGURES=spirals`` serves the figure below.

A figure is a parameter model (the bounds are the validation, the form and the API docs) and a
function that draws on the ``Figure`` it is given.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from pydantic import Field

from figserve import FIGURES, SeededParams, rng_for, title_field


class SpiralParams(SeededParams):  # SeededParams adds `seed`
    turns: int = Field(3, ge=1, le=20, description="Number of turns.")
    noise: float = Field(0.3, ge=0, le=5, description="Spread of the points around the curve.")
    title: str = title_field()


@FIGURES.figure(
    "spiral",
    title="Noisy spiral",
    description="Points scattered around an Archimedean spiral, on polar axes.",
    alt="Spiral of {turns} turns with noise {noise:g}",
    params=SpiralParams,
)
def spiral(fig: Figure, p: SpiralParams) -> None:
    t = np.linspace(0, 2 * np.pi * p.turns, 400)
    r = t + rng_for(p).normal(0, p.noise, t.size)
    fig.set_layout_engine("constrained")  # fit leaves polar axes alone: a layout engine fits them
    ax = fig.add_subplot(projection="polar")
    ax.scatter(t, r, s=6, color="#2f5fb3", alpha=0.7)
    ax.set_yticklabels([])
    if p.title:
        ax.set_title(p.title, parse_math=False)
