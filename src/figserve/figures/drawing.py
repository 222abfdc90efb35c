"""Small pieces the shipped figures share: limits with margins, titles, legends below the plot.

Each shipped figure is written as ``build`` (make the artists once) plus ``update`` (give them
the data, limits and texts of one set of parameters); its draw function is the two together,
so a figure moved to new parameters by ``update`` is the figure drawn fresh for them. Limits are
always set explicitly rather than autoscaled: autoscaling remembers the data an axes has seen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

from .layout import EDGE_PT, text_width

# Texts are matplotlib's sizes (10 points) from a 320x240 figure up; smaller figures shrink
# them, down to SMALLEST_TEXT, so that a thumbnail keeps its tick labels apart.
TEXT_PT = 10.0
SMALLEST_TEXT = 6.0
_FULL_SIZE_PT = (230.0, 173.0)  # 320x240 CSS pixels
# Share of the data's range left empty on each side (matplotlib's default is 0.05).
MARGIN = 0.05


def nonsingular(low: float, high: float, expander: float = 0.05) -> tuple[float, float]:
    """``low`` to ``high``, or a small range around them when floats cannot split it (a single
    value: ``expander`` of its size on each side, or of 1 around 0), as matplotlib widens the
    limits it autoscales."""
    if high < low:
        low, high = high, low
    largest = max(abs(low), abs(high))
    if high - low <= largest * 1e-12 or high - low < 1e-300:
        if largest < 1e-300:
            return -expander, expander
        return low - expander * abs(low), high + expander * abs(high)
    return low, high


def padded(low: float, high: float, margin: float = MARGIN) -> tuple[float, float]:
    """``low`` to ``high`` widened by ``margin`` of the range on each side; a single value (or
    a range too narrow for floats to split) becomes a small range around it, as matplotlib's
    autoscaling makes it."""
    low, high = nonsingular(float(low), float(high), expander=0.05)
    span = high - low
    return low - margin * span, high + margin * span


def data_range(*arrays: np.ndarray) -> tuple[float, float]:
    """The least and greatest value of some arrays (which may be empty: then 0 to 1)."""
    present = [a for a in arrays if a.size]
    if not present:
        return 0.0, 1.0
    return min(float(a.min()) for a in present), max(float(a.max()) for a in present)


def text_size(fig: Figure) -> float:
    """The size of a figure's tick labels and axis labels, in points (see ``TEXT_PT``)."""
    share = min(
        fig.get_figwidth() * 72 / _FULL_SIZE_PT[0], fig.get_figheight() * 72 / _FULL_SIZE_PT[1]
    )
    return round(max(SMALLEST_TEXT, min(TEXT_PT, TEXT_PT * share)), 1)


def size_texts(fig: Figure, *axes: Axes) -> float:
    """Tick labels and axis labels of ``axes`` at the figure's text size; returns the size."""
    size = text_size(fig)
    for ax in axes:
        ax.tick_params(labelsize=size)
        ax.xaxis.label.set_fontsize(size)
        ax.yaxis.label.set_fontsize(size)
    return size


def set_title(ax: Axes, text: str) -> None:
    """The title the person gave, drawn as typed (never parsed as math); empty: none."""
    fig = ax.get_figure(root=True)
    ax.set_title(text, parse_math=False, fontsize=1.2 * text_size(fig))


@dataclass
class LegendBelow:
    """A legend under the plot, outside the axes, so it never covers the data; ``fit`` leaves
    room for it at the bottom of the figure."""

    legend: Legend | None = None
    _key: tuple[object, ...] = ()

    def show(
        self, fig: Figure, handles: Sequence[Artist], labels: Sequence[str], ncols: int
    ) -> None:
        """List ``handles`` as ``labels``: new texts in place when the entries are the same
        artists in the same columns, else a new legend (its entries cannot be edited)."""
        size = 0.83 * text_size(fig)  # matplotlib's "small"
        ncols = _columns_that_fit(fig, labels, ncols, size)
        key = (*(id(h) for h in handles), ncols)
        if self.legend is not None and key == self._key:
            for text, label in zip(self.legend.get_texts(), labels, strict=True):
                text.set_text(label)
            return
        if self.legend is not None:
            self.legend.remove()
        self.legend = fig.legend(
            handles, labels, loc="outside lower center", ncols=ncols, fontsize=size,
            frameon=False,
        )  # fmt: skip
        for text in self.legend.get_texts():
            text.set_parse_math(False)
        self._key = key


def _columns_that_fit(fig: Figure, labels: Sequence[str], most: int, size: float) -> int:
    """Columns for a legend of ``labels`` in the small font: as few rows as fit across the
    figure, in as few columns as give that many rows (one if nothing fits: then ``fit``
    drops the legend)."""
    # A handle, the gap after it and the text; columns apart by the column spacing.
    entries = [(2.0 + 0.8) * size + text_width(fig, label, size) for label in labels]
    room = points_wide(fig) - 2 * EDGE_PT - 0.8 * size
    count = len(entries)
    for ncols in range(max(1, min(most, count)), 0, -1):
        # matplotlib's split: the first columns take one more entry.
        rows, longer = divmod(count, ncols)
        heights = [rows + 1] * longer + [rows] * (ncols - longer)
        starts = [sum(heights[:i]) for i in range(ncols)]
        widths = [max(entries[a : a + n]) for a, n in zip(starts, heights, strict=True)]
        if sum(widths) + 2.0 * size * (ncols - 1) <= room:
            fewest_rows = math.ceil(count / ncols)
            return math.ceil(count / fewest_rows)
    return 1


def points_wide(fig: Figure) -> float:
    """The figure's width in points (a 400 px image is 288 points wide)."""
    return fig.get_figwidth() * 72
