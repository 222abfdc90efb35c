"""Two shipped figures over time: a random walk on a date axis, and damped sine harmonics."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
from matplotlib.axes import Axes
from matplotlib.dates import (
    DAILY,
    HOURLY,
    MONTHLY,
    YEARLY,
    AutoDateLocator,
    ConciseDateFormatter,
    date2num,
)
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from pydantic import Field

from .drawing import LegendBelow, data_range, padded, points_wide, set_title, size_texts
from .registry import FigureParams, SeededParams, rng_for, title_field

# Dates from 0100-01-01 to 9889-12-31 as text (the calendar itself: format "date").
DATE_0100_TO_9889 = (
    r"^(?:0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-7][0-9]{2}|98[0-8][0-9])-[0-9]{2}-[0-9]{2}$"
)
# matplotlib draws dates from year 1 to 9999. The axis reaches past the data (margins, and
# ticks rounded out to whole years), so a series keeps a century away from either end: it
# starts from FIRST_DAY to LAST_START, and the longest series then ends by 9899-12-31.
MAX_DAYS = 3650
FIRST_DAY = dt.date(100, 1, 1)
LAST_START = dt.date(9889, 12, 31)
# Month ticks name the year under January (not a bare year among month names); the year of
# the series is also the axis' offset text.
_ZERO_FORMATS = ["", "%b\n%Y", "%b", "%b-%d", "%H:%M", "%H:%M"]


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


@dataclass
class Series:
    ax: Axes
    daily: Line2D
    smooth: Line2D
    legend: LegendBelow = field(default_factory=LegendBelow)


def build_timeseries(fig: Figure) -> Series:
    ax = fig.add_subplot()
    first = np.array(["2000-01-01"], dtype="datetime64[D]")  # the x axis learns it shows dates
    (daily,) = ax.plot(first, [0.0], color="#8c8c8c", lw=1)
    (smooth,) = ax.plot(first, [0.0], color="#dd8452", lw=2)
    # Few enough ticks that labels never run into each other, even in a small preview.
    wide = points_wide(fig)
    most = max(3, min(7, int(wide // 60)))
    # Each unit must be able to cover what the next larger one leaves to it (fewer than
    # ``minticks`` of the larger unit) within its largest interval: months up to 3 years with
    # yearly steps of 12 months, days up to 3 months, hours up to 3 days.
    maxticks = {YEARLY: most, MONTHLY: max(most, 4), DAILY: max(most, 6), HOURLY: max(most, 6)}
    locator = AutoDateLocator(minticks=2 if wide < 200 else 3, maxticks=maxticks)
    locator.intervald[MONTHLY] = [1, 2, 3, 4, 6, 12]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, zero_formats=_ZERO_FORMATS))
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    size_texts(fig, ax)
    return Series(ax, daily, smooth)


def update_timeseries(fig: Figure, h: Series, p: TimeseriesParams) -> Series:
    steps = rng_for(p).normal(p.drift, p.volatility, p.days)
    values = np.cumsum(steps)
    days = np.arange(np.datetime64(p.start, "D"), np.datetime64(p.start, "D") + p.days)
    window = min(p.window, p.days)
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    h.daily.set_data(days, values)
    h.smooth.set_data(days[window - 1 :], smooth)
    h.ax.set_xlim(padded(date2num(days[0]), date2num(days[-1])))
    h.ax.set_ylim(padded(*data_range(values)))
    h.legend.show(fig, [h.daily, h.smooth], ["daily", f"{window}-day mean"], ncols=2)
    set_title(h.ax, p.title)
    return h


def timeseries(fig: Figure, p: TimeseriesParams) -> Series:
    return update_timeseries(fig, build_timeseries(fig), p)


MAX_COMPONENTS = 8
_T = np.linspace(0, 10, 1000)
_SHOWN = 3  # harmonics the legend names


class WavesParams(FigureParams):
    frequency: float = Field(1.0, ge=0.1, le=20, description="Frequency of the first wave (Hz).")
    damping: float = Field(0.3, ge=0, le=5, description="Exponential damping per second.")
    components: int = Field(3, ge=1, le=MAX_COMPONENTS, description="Number of harmonics drawn.")
    title: str = title_field()


@dataclass
class Waves:
    ax: Axes
    harmonics: list[Line2D]
    total: Line2D
    legend: LegendBelow = field(default_factory=LegendBelow)


def build_waves(fig: Figure) -> Waves:
    ax = fig.add_subplot()
    zeros = np.zeros_like(_T)
    # Every harmonic there may be, in the colour cycle's strong colours; those not asked for
    # are hidden.
    harmonics = [ax.plot(_T, zeros, lw=1.3, color=f"C{k}")[0] for k in range(MAX_COMPONENTS)]
    (total,) = ax.plot(_T, zeros, color="black", lw=1.8)
    ax.set_xlim(padded(0, 10))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    size_texts(fig, ax)
    return Waves(ax, harmonics, total)


def update_waves(fig: Figure, h: Waves, p: WavesParams) -> Waves:
    envelope = np.exp(-p.damping * _T)
    total = np.zeros_like(_T)
    drawn = []
    for k, line in enumerate(h.harmonics, start=1):
        line.set_visible(k <= p.components)
        if k <= p.components:
            wave = envelope * np.sin(2 * np.pi * p.frequency * k * _T) / k
            total += wave
            line.set_ydata(wave)
            drawn.append(wave)
    h.total.set_ydata(total)
    h.ax.set_ylim(padded(*data_range(total, *drawn)))
    named = h.harmonics[: min(_SHOWN, p.components)]
    labels = [f"harmonic {k}" for k in range(1, len(named) + 1)] + ["sum"]
    h.legend.show(fig, [*named, h.total], labels, ncols=4)
    set_title(h.ax, p.title)
    return h


def waves(fig: Figure, p: WavesParams) -> Waves:
    return update_waves(fig, build_waves(fig), p)
