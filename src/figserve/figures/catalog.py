"""The figures figserve ships. Each is one parameter model plus one pure draw function."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Literal

import numpy as np
from matplotlib import rcParams
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import text_to_path
from pydantic import Field

from .registry import FigureParams, Registry, SeededParams, rng_for, title_field

FIGURES = Registry()
# Dates from 0100-01-01 to 9889-12-31 as text (the calendar itself: format "date").
DATE_0100_TO_9889 = (
    r"^(?:0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-7][0-9]{2}|98[0-8][0-9])-[0-9]{2}-[0-9]{2}$"
)

# Bounds keep every figure cheap to draw: no parameter can make one render take seconds.
_BIG = 1e6
# The least spread of a histogram: float64 holds about 16 digits, so a finer spread around a
# large mean collapses the sample onto a few values that numpy cannot split into bins. 1e-3 is
# 1e-9 of the largest mean, seven digits of room; one bound alone, so a schema can state it.
MIN_STD = 1e-3
# matplotlib draws dates from year 1 to 9999. The axis reaches past the data (margins, and
# ticks rounded out to whole years), so a series keeps a century away from either end: it
# starts from FIRST_DAY to LAST_START, and the longest series then ends by 9899-12-31.
MAX_DAYS = 3650
FIRST_DAY = dt.date(100, 1, 1)
LAST_START = dt.date(9889, 12, 31)


def _legend_below(fig: Figure, ncols: int) -> None:
    """The legend under the plot, outside the axes: it can never cover the data."""
    fig.legend(loc="outside lower center", ncols=ncols, fontsize="small", frameon=False)


class NormalParams(SeededParams):
    mean: float = Field(5.0, ge=-_BIG, le=_BIG, description="Centre of both coordinates.")
    var: float = Field(
        3.0,
        gt=0,
        le=_BIG,
        description="Spread of the points (used as the standard deviation, as in the original).",
    )
    n: int = Field(100, ge=1, le=10_000, description="Number of points.")


@FIGURES.figure(
    "normal",
    title="Random-normal scatter",
    description="Points drawn from a normal distribution, as red hexagons.",
    alt="Scatter of {n} random-normal points around mean {mean:g} with spread {var:g}",
    params=NormalParams,
)
def normal(fig: Figure, p: NormalParams) -> None:
    # The figure of the original Flask app, drawn without pyplot.
    rng = rng_for(p)
    xs = rng.normal(p.mean, p.var, p.n)
    ys = rng.normal(p.mean, p.var, p.n)
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=100, marker="h", color="red", alpha=0.3)
    ax.margins(0.08)  # room for the markers at the edges
    _fit_to_tick_labels(fig, ax)


_EDGE_PT = 4.0  # space left around the outermost text, in points


def _fit_to_tick_labels(fig: Figure, ax: Axes) -> None:
    """Margins that just fit the tick labels, measured without drawing: a layout engine would
    draw the figure twice (once to measure), which doubles the cost of this cheap figure."""
    # Twice: how many ticks an axis shows depends on its length, which the margins change.
    for _ in range(2):
        fig.subplots_adjust(**_margins_for(fig, ax))


def _margins_for(fig: Figure, ax: Axes) -> dict[str, float]:
    xlabels, xoffset = _tick_texts(ax.xaxis, ax.get_xlim())
    ylabels, yoffset = _tick_texts(ax.yaxis, ax.get_ylim())
    font = FontProperties(size=rcParams["xtick.labelsize"])
    tick = rcParams["xtick.major.size"] + rcParams["xtick.major.pad"]
    height = _text_size("0", font)[1]
    widths = [_text_size(t, font)[0] for t in xlabels]
    wide, high = fig.get_figwidth() * 72, fig.get_figheight() * 72
    left = max((_text_size(t, font)[0] for t in ylabels), default=0) + tick + _EDGE_PT
    bottom = height + tick + _EDGE_PT + (height + _EDGE_PT if xoffset else 0)
    top = _EDGE_PT + (height + _EDGE_PT if yoffset else 0)
    # The last x label is centred on its tick and may reach past the axes.
    right = _EDGE_PT + (widths[-1] / 2 if widths else 0)
    # Tiny figures: the axes keep at least 40% of each side.
    scale_x = min(1.0, 0.6 * wide / (left + right))
    scale_y = min(1.0, 0.6 * high / (bottom + top))
    return {
        "left": left * scale_x / wide,
        "right": 1 - right * scale_x / wide,
        "bottom": bottom * scale_y / high,
        "top": 1 - top * scale_y / high,
    }


def _tick_texts(axis: Axis, limits: tuple[float, float]) -> tuple[list[str], str]:
    """The labels an axis will show within ``limits``, and its offset text."""
    low, high = sorted(limits)
    slack = (high - low) * 1e-9
    locs = [v for v in axis.get_major_locator()() if low - slack <= v <= high + slack]
    formatter = axis.get_major_formatter()
    labels = formatter.format_ticks(locs)
    return [t for t in labels if t], formatter.get_offset()


def _text_size(text: str, font: FontProperties) -> tuple[float, float]:
    return _text_size_at(text, font.get_size_in_points(), font.get_family()[0])


@functools.lru_cache(maxsize=4096)
def _text_size_at(text: str, points: float, family: str) -> tuple[float, float]:
    # Tick labels repeat from image to image: measured once per render process.
    font = FontProperties(family=family, size=points)
    width, height, _ = text_to_path.get_text_width_height_descent(text, font, ismath=False)
    return width, height


class HistogramParams(SeededParams):
    mean: float = Field(0.0, ge=-_BIG, le=_BIG, description="Mean of the sample.")
    std: float = Field(
        1.0, ge=MIN_STD, le=_BIG, description="Standard deviation of the sample (at least 0.001)."
    )
    n: int = Field(1000, ge=10, le=100_000, description="Sample size.")
    bins: int = Field(30, ge=1, le=200, description="Number of histogram bins.")
    title: str = title_field()


@FIGURES.figure(
    "histogram",
    title="Histogram with fitted density",
    description="A normal sample as a density histogram, with the normal curve fitted to it.",
    alt="Histogram of {n} samples (mean {mean:g}, std {std:g}) with a fitted normal curve",
    params=HistogramParams,
)
def histogram(fig: Figure, p: HistogramParams) -> None:
    sample = rng_for(p).normal(p.mean, p.std, p.n)
    mu, sigma = float(sample.mean()), float(sample.std())
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    # One filled outline instead of a patch per bin: looks the same, draws in constant time.
    ax.hist(
        sample,
        bins=p.bins,
        density=True,
        histtype="stepfilled",
        color="#4c72b0",
        alpha=0.6,
        label="sample",
    )
    if sigma > 0:
        xs = np.linspace(sample.min(), sample.max(), 200)
        pdf = np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
        ax.plot(xs, pdf, color="#c44e52", lw=2, label=f"fit: μ={mu:.3g}, σ={sigma:.3g}")  # noqa: RUF001
    ax.set_ylabel("density")
    _legend_below(fig, ncols=2)
    if p.title:
        ax.set_title(p.title, parse_math=False)


class TimeseriesParams(SeededParams):
    days: int = Field(180, ge=2, le=MAX_DAYS, description="Length of the series in days.")
    start: dt.date = Field(
        dt.date(2026, 1, 1),
        ge=FIRST_DAY,
        le=LAST_START,
        description=f"First day (YYYY-MM-DD), from {FIRST_DAY} to {LAST_START}.",
        json_schema_extra={"pattern": DATE_0100_TO_9889},
    )
    drift: float = Field(0.05, ge=-100, le=100, description="Mean daily change.")
    volatility: float = Field(1.0, ge=0, le=100, description="Standard deviation of daily change.")
    window: int = Field(7, ge=1, le=365, description="Days in the moving average.")
    title: str = title_field()


@FIGURES.figure(
    "timeseries",
    title="Random-walk time series",
    description="A daily random walk with its moving average, on a date axis.",
    alt="Daily random walk over {days} days from {start} with a {window}-day moving average",
    params=TimeseriesParams,
)
def timeseries(fig: Figure, p: TimeseriesParams) -> None:
    steps = rng_for(p).normal(p.drift, p.volatility, p.days)
    values = np.cumsum(steps)
    days = np.arange(np.datetime64(p.start, "D"), np.datetime64(p.start, "D") + p.days)
    window = min(p.window, p.days)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    ax.plot(days, values, color="#8c8c8c", lw=1, label="daily")
    ax.plot(days[window - 1 :], smooth, color="#dd8452", lw=2, label=f"{window}-day mean")
    # Few enough ticks that year labels never run into each other, even in a gallery preview.
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _legend_below(fig, ncols=2)
    ax.grid(alpha=0.3)
    if p.title:
        ax.set_title(p.title, parse_math=False)


class HeatmapParams(SeededParams):
    rows: int = Field(20, ge=1, le=200, description="Rows of the grid.")
    cols: int = Field(30, ge=1, le=200, description="Columns of the grid.")
    smooth: int = Field(2, ge=0, le=10, description="Smoothing passes over the random field.")
    cmap: Literal["viridis", "magma", "cividis", "coolwarm", "gray"] = Field(
        "viridis", description="Colour map."
    )
    title: str = title_field()


@FIGURES.figure(
    "heatmap",
    title="Heatmap with colour bar",
    description="A smoothed random field drawn as a heatmap with a colour bar.",
    alt="Heatmap of a {rows} by {cols} random field in the {cmap} colour map",
    params=HeatmapParams,
)
def heatmap(fig: Figure, p: HeatmapParams) -> None:
    field = rng_for(p).normal(size=(p.rows, p.cols))
    for _ in range(p.smooth):
        # Average each cell with its four neighbours (edges repeat) to get smooth blobs.
        padded = np.pad(field, 1, mode="edge")
        field = (
            padded[1:-1, 1:-1]
            + padded[:-2, 1:-1]
            + padded[2:, 1:-1]
            + padded[1:-1, :-2]
            + padded[1:-1, 2:]
        ) / 5
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    image = ax.imshow(field, cmap=p.cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax)
    if p.title:
        ax.set_title(p.title, parse_math=False)


class WavesParams(FigureParams):
    frequency: float = Field(1.0, ge=0.1, le=20, description="Frequency of the first wave (Hz).")
    damping: float = Field(0.3, ge=0, le=5, description="Exponential damping per second.")
    components: int = Field(3, ge=1, le=8, description="Number of harmonics drawn.")
    title: str = title_field()


@FIGURES.figure(
    "waves",
    title="Damped waves",
    description="Damped sine harmonics and their sum; no randomness, so every URL is cacheable.",
    alt="{components} damped sine harmonics of {frequency:g} Hz and their sum",
    params=WavesParams,
)
def waves(fig: Figure, p: WavesParams) -> None:
    t = np.linspace(0, 10, 1000)
    envelope = np.exp(-p.damping * t)
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    total = np.zeros_like(t)
    for k in range(1, p.components + 1):
        wave = envelope * np.sin(2 * np.pi * p.frequency * k * t) / k
        total += wave
        ax.plot(t, wave, lw=0.8, alpha=0.6, label=f"harmonic {k}" if k <= 3 else None)
    ax.plot(t, total, color="black", lw=1.5, label="sum")
    ax.set_xlabel("time (s)")
    ax.legend(loc="upper right", fontsize="small")
    if p.title:
        ax.set_title(p.title, parse_math=False)
