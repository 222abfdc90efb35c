"""The figures figserve ships: each is a parameter model, a draw function and an update path.

The drawing code lives in ``scatter``, ``samples`` and ``series``; every shipped figure is
``build`` plus ``update``, so a kept figure moved to new parameters is byte for byte the figure
drawn fresh for them (see ``figserve.figures.testing``). None sets a layout engine: the renderer
fits the margins to the texts (``figserve.figures.layout.fit``) without drawing twice.
"""

from __future__ import annotations

from . import samples, scatter, series
from .registry import Registry
from .samples import MIN_STD, HeatmapParams, HistogramParams
from .scatter import NormalParams, shared_window
from .series import (
    DATE_0100_TO_9889,
    FIRST_DAY,
    LAST_START,
    MAX_DAYS,
    TimeseriesParams,
    WavesParams,
)

__all__ = [
    "DATE_0100_TO_9889",
    "FIGURES",
    "FIRST_DAY",
    "LAST_START",
    "MAX_DAYS",
    "MIN_STD",
    "HeatmapParams",
    "HistogramParams",
    "NormalParams",
    "TimeseriesParams",
    "WavesParams",
    "shared_window",
]

FIGURES = Registry()

FIGURES.figure(
    "normal",
    title="Random-normal scatter",
    description="Points drawn from a normal distribution, as red hexagons.",
    alt="Scatter of {n} random-normal points around mean {mean:g} with spread {var:g}",
    params=NormalParams,
    update=scatter.update,
)(scatter.draw)

FIGURES.figure(
    "histogram",
    title="Histogram with fitted density",
    description="A normal sample as a density histogram, with the normal curve fitted to it.",
    alt="Histogram of {n} samples (mean {mean:g}, std {std:g}) with a fitted normal curve",
    params=HistogramParams,
    update=samples.update_histogram,
)(samples.histogram)

FIGURES.figure(
    "timeseries",
    title="Random-walk time series",
    description="A daily random walk with its moving average, on a date axis.",
    alt="Daily random walk over {days} days from {start} with a {window}-day moving average",
    params=TimeseriesParams,
    update=series.update_timeseries,
)(series.timeseries)

FIGURES.figure(
    "heatmap",
    title="Heatmap with colour bar",
    description="A smoothed random field drawn as a heatmap with a colour bar.",
    alt="Heatmap of a {rows} by {cols} random field in the {cmap} colour map",
    params=HeatmapParams,
    update=samples.update_heatmap,
)(samples.heatmap)

FIGURES.figure(
    "waves",
    title="Damped waves",
    description="Damped sine harmonics and their sum; no randomness, so every URL is cacheable.",
    alt="{components} damped sine harmonics of {frequency:g} Hz and their sum",
    params=WavesParams,
    update=series.update_waves,
)(series.waves)
