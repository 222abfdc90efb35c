"""The seed's figure: a random-normal scatter of red hexagons, and a window several share."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .drawing import TEXT_PT, padded, size_texts
from .registry import SeededParams, rng_for

BIG = 1e6  # the largest mean and spread
WINDOW = 1e7  # the largest |lo| and |hi|: a mean of 1e6 and 3.5 spreads of 1e6 around it fit
# The least window: a billionth of the size of its ends (narrower ranges run out of float
# digits for tick labels), and never below 1e-200 (matplotlib widens ranges of tinier numbers).
MIN_WINDOW = 1e-9
MIN_WINDOW_ABS = 1e-200
_SPREADS = 3.5  # a shared window reaches this many spreads around every mean
_MARGIN = 0.08  # room for the markers at the edges, as a share of the data's range


class NormalParams(SeededParams):
    mean: float = Field(5.0, ge=-BIG, le=BIG, description="Centre of both coordinates.")
    var: float = Field(
        3.0,
        gt=0,
        le=BIG,
        description="Spread of the points (used as the standard deviation, as in the original).",
    )
    n: int = Field(100, ge=1, le=10_000, description="Number of points.")
    lo: float | None = Field(
        None,
        ge=-WINDOW,
        le=WINDOW,
        description="Lower end of both axes, given with hi (default: fitted to the points).",
    )
    hi: float | None = Field(
        None,
        ge=-WINDOW,
        le=WINDOW,
        validate_default=True,
        description="Upper end of both axes, given with lo (default: fitted to the points).",
    )

    @field_validator("hi")
    @classmethod
    def _window(cls, hi: float | None, info: ValidationInfo) -> float | None:
        if "lo" not in info.data:
            return hi  # lo was refused on its own
        lo = info.data["lo"]
        if (lo is None) != (hi is None):
            raise PydanticCustomError("window", "lo and hi are given together, or neither")
        if lo is not None and hi is not None and not hi - lo >= least_window(lo, hi):
            least = f"{least_window(lo, hi):.3g}"
            raise PydanticCustomError(
                "window", "hi must exceed lo by at least {least}", {"least": least}
            )
        return hi


def least_window(lo: float, hi: float) -> float:
    """The narrowest window from ``lo`` to ``hi`` the scatter draws as asked."""
    return max(MIN_WINDOW_ABS, MIN_WINDOW * max(abs(lo), abs(hi)))


@dataclass
class Scatter:
    ax: Axes
    points: PathCollection


def build(fig: Figure) -> Scatter:
    ax = fig.add_subplot()
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    size = size_texts(fig, ax)
    # Hexagons of 10 points across with text of 10 points, smaller with the text.
    area = 100 * (size / TEXT_PT) ** 2
    points = ax.scatter(np.empty(0), np.empty(0), s=area, marker="h", color="red", alpha=0.3)
    return Scatter(ax, points)


def update(fig: Figure, h: Scatter, p: NormalParams) -> Scatter:
    rng = rng_for(p)
    xs = rng.normal(p.mean, p.var, p.n)
    ys = rng.normal(p.mean, p.var, p.n)
    h.points.set_offsets(np.column_stack([xs, ys]))
    if p.lo is not None and p.hi is not None:
        xlim = ylim = (p.lo, p.hi)
    else:
        xlim = padded(xs.min(), xs.max(), _MARGIN)
        ylim = padded(ys.min(), ys.max(), _MARGIN)
    h.ax.set_xlim(xlim)
    h.ax.set_ylim(ylim)
    return h


def draw(fig: Figure, p: NormalParams) -> Scatter:
    # The figure of the original Flask app, drawn without pyplot.
    return update(fig, build(fig), p)


def shared_window(pairs: Iterable[tuple[float, float]]) -> tuple[float, float]:
    """One range for both axes of several scatters (mean, spread), so they can be compared:
    about 3.5 spreads around every mean, widened to round numbers; always a window the scatter
    takes (see ``least_window``)."""
    pairs = list(pairs)
    low = max(-WINDOW, min(m - _SPREADS * v for m, v in pairs))
    high = min(WINDOW, max(m + _SPREADS * v for m, v in pairs))
    least = least_window(low, high)
    if not high - low >= 2 * least:  # too narrow for floats to split: around the middle
        middle = min(WINDOW - 2 * least, max(-WINDOW + 2 * least, low / 2 + high / 2))
        low, high = middle - least * 1.5, middle + least * 1.5
    ticks = MaxNLocator(nbins=6).tick_values(low, high)
    below = [t for t in ticks if t <= low]
    above = [t for t in ticks if t >= high]
    if below and above:
        round_low = float(f"{max(below):.12g}")
        round_high = float(f"{min(above):.12g}")
        if (
            -WINDOW <= round_low <= low
            and high <= round_high <= WINDOW
            and round_high - round_low >= least_window(round_low, round_high)
        ):
            return round_low, round_high
    return low, high
