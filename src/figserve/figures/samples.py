"""Two shipped figures of random samples: a histogram with its fitted curve, and a heatmap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colorbar import Colorbar
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import StepPatch
from matplotlib.ticker import MaxNLocator
from pydantic import Field

from .drawing import LegendBelow, nonsingular, padded, set_title, size_texts
from .registry import SeededParams, rng_for, title_field

BIG = 1e6
# The least spread of a histogram: float64 holds about 16 digits, so a finer spread around a
# large mean collapses the sample onto a few values that numpy cannot split into bins. 1e-3 is
# 1e-9 of the largest mean, seven digits of room; one bound alone, so a schema can state it.
MIN_STD = 1e-3


class HistogramParams(SeededParams):
    mean: float = Field(0.0, ge=-BIG, le=BIG, description="Mean of the sample.")
    std: float = Field(
        1.0, ge=MIN_STD, le=BIG, description="Standard deviation of the sample (at least 0.001)."
    )
    n: int = Field(1000, ge=10, le=100_000, description="Sample size.")
    bins: int = Field(30, ge=1, le=200, description="Number of histogram bins.")
    title: str = title_field()


@dataclass
class Histogram:
    ax: Axes
    bars: StepPatch
    curve: Line2D
    legend: LegendBelow = field(default_factory=LegendBelow)


def build_histogram(fig: Figure) -> Histogram:
    ax = fig.add_subplot()
    # One filled outline instead of a patch per bin: looks the same, draws in constant time.
    bars = ax.stairs([0.0], [0.0, 1.0], fill=True, color="#4c72b0", alpha=0.6)
    (curve,) = ax.plot([], [], color="#c44e52", lw=2)
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    size_texts(fig, ax)
    return Histogram(ax, bars, curve)


def update_histogram(fig: Figure, h: Histogram, p: HistogramParams) -> Histogram:
    sample = rng_for(p).normal(p.mean, p.std, p.n)
    mu, sigma = float(sample.mean()), float(sample.std())
    heights, edges = np.histogram(sample, bins=p.bins, density=True)
    h.bars.set_data(heights, edges)
    top = float(heights.max())
    if sigma > 0:
        xs = np.linspace(edges[0], edges[-1], 200)
        pdf = np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        h.curve.set_data(xs, pdf)
        top = max(top, float(pdf.max()))
        fitted = f"fit: μ={mu:.3g}, σ={sigma:.3g}"  # noqa: RUF001
    else:
        h.curve.set_data([], [])
        fitted = "fit: no spread"
    h.ax.set_xlim(padded(edges[0], edges[-1]))
    h.ax.set_ylim(0, top * 1.05 if top > 0 else 1.0)
    h.legend.show(fig, [h.bars, h.curve], ["sample", fitted], ncols=2)
    set_title(h.ax, p.title)
    return h


def histogram(fig: Figure, p: HistogramParams) -> Histogram:
    return update_histogram(fig, build_histogram(fig), p)


class HeatmapParams(SeededParams):
    rows: int = Field(20, ge=1, le=200, description="Rows of the grid.")
    cols: int = Field(30, ge=1, le=200, description="Columns of the grid.")
    smooth: int = Field(2, ge=0, le=10, description="Smoothing passes over the random field.")
    cmap: Literal["viridis", "magma", "cividis", "coolwarm", "gray"] = Field(
        "viridis", description="Colour map."
    )
    title: str = title_field()


@dataclass
class Heatmap:
    ax: Axes
    image: AxesImage
    colorbar: Colorbar


def build_heatmap(fig: Figure) -> Heatmap:
    ax = fig.add_subplot()
    image = ax.imshow(np.array([[0.0, 1.0]]), aspect="auto", interpolation="nearest")
    colorbar = fig.colorbar(image, ax=ax)
    colorbar.set_label("value")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    size_texts(fig, ax, colorbar.ax)
    # Rows and columns are counted from 1, one tick per whole number or fewer.
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10], integer=True))
    return Heatmap(ax, image, colorbar)


def update_heatmap(fig: Figure, h: Heatmap, p: HeatmapParams) -> Heatmap:
    field = rng_for(p).normal(size=(p.rows, p.cols))
    for _ in range(p.smooth):
        # Average each cell with its four neighbours (edges repeat) to get smooth blobs.
        padded_field = np.pad(field, 1, mode="edge")
        field = (
            padded_field[1:-1, 1:-1]
            + padded_field[:-2, 1:-1]
            + padded_field[2:, 1:-1]
            + padded_field[1:-1, :-2]
            + padded_field[1:-1, 2:]
        ) / 5
    h.image.set_data(field)
    h.image.set_extent((0.5, p.cols + 0.5, p.rows + 0.5, 0.5))
    # Each change of the colour map or range redraws the colour bar: only when it changes.
    if h.image.get_cmap().name != p.cmap:
        h.image.set_cmap(p.cmap)
    # A flat field still gets a colour bar with a range, as the colour bar would widen it.
    h.image.set_clim(*nonsingular(float(field.min()), float(field.max()), expander=0.1))
    h.ax.set_xlim(0.5, p.cols + 0.5)
    h.ax.set_ylim(p.rows + 0.5, 0.5)
    set_title(h.ax, p.title)
    return h


def heatmap(fig: Figure, p: HeatmapParams) -> Heatmap:
    return update_heatmap(fig, build_heatmap(fig), p)
