"""Each shipped figure drawn the plain way: the obvious matplotlib code a person writes.

``Figure()``, ``add_subplot``, the plot calls, ``savefig`` with matplotlib's own writers, and a
constrained layout where the figure needs one to keep its labels and legend in view (the
scatter, as the seed drew it, has none). The same data and look as figserve's figure of the same
parameters, so the two cost the same work to draw.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

Plain = Callable[[Figure, Any], None]


def normal(fig: Figure, p: Any) -> None:
    rng = np.random.default_rng(p.seed)
    xs, ys = rng.normal(p.mean, p.var, p.n), rng.normal(p.mean, p.var, p.n)
    ax = fig.add_subplot()
    ax.scatter(xs, ys, s=100, marker="h", color="red", alpha=0.3)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def histogram(fig: Figure, p: Any) -> None:
    fig.set_layout_engine("constrained")
    sample = np.random.default_rng(p.seed).normal(p.mean, p.std, p.n)
    mu, sigma = sample.mean(), sample.std()
    ax = fig.add_subplot()
    ax.hist(sample, bins=p.bins, density=True, histtype="stepfilled", alpha=0.6, label="sample")
    xs = np.linspace(sample.min(), sample.max(), 200)
    pdf = np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))
    ax.plot(xs, pdf, lw=2, label=f"fit: mu={mu:.3g}, sigma={sigma:.3g}")
    ax.set_xlabel("value")
    ax.set_ylabel("density")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.set_title(p.title)


def timeseries(fig: Figure, p: Any) -> None:
    fig.set_layout_engine("constrained")
    values = np.cumsum(np.random.default_rng(p.seed).normal(p.drift, p.volatility, p.days))
    days = np.arange(np.datetime64(p.start, "D"), np.datetime64(p.start, "D") + p.days)
    smooth = np.convolve(values, np.ones(p.window) / p.window, mode="valid")
    ax = fig.add_subplot()
    ax.plot(days, values, color="#8c8c8c", lw=1, label="daily")
    ax.plot(days[p.window - 1 :], smooth, lw=2, label=f"{p.window}-day mean")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_ylabel("value")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.set_title(p.title)


def heatmap(fig: Figure, p: Any) -> None:
    fig.set_layout_engine("constrained")
    field = np.random.default_rng(p.seed).normal(size=(p.rows, p.cols))
    for _ in range(p.smooth):
        padded = np.pad(field, 1, mode="edge")
        field = (
            padded[1:-1, 1:-1]
            + padded[:-2, 1:-1]
            + padded[2:, 1:-1]
            + padded[1:-1, :-2]
            + padded[1:-1, 2:]
        ) / 5
    ax = fig.add_subplot()
    image = ax.imshow(field, cmap=p.cmap, aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="value")
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    ax.set_title(p.title)


def waves(fig: Figure, p: Any) -> None:
    fig.set_layout_engine("constrained")
    t = np.linspace(0, 10, 1000)
    envelope = np.exp(-p.damping * t)
    ax = fig.add_subplot()
    total = np.zeros_like(t)
    for k in range(1, p.components + 1):
        wave = envelope * np.sin(2 * np.pi * p.frequency * k * t) / k
        total += wave
        ax.plot(t, wave, lw=1.3, label=f"harmonic {k}" if k <= 3 else None)
    ax.plot(t, total, color="black", lw=1.8, label="sum")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    fig.legend(loc="outside lower center", ncols=2, fontsize="small", frameon=False)
    ax.set_title(p.title)


PLAIN: dict[str, Plain] = {
    "normal": normal,
    "histogram": histogram,
    "timeseries": timeseries,
    "heatmap": heatmap,
    "waves": waves,
}


def render(name: str, params: Any, width: int, height: int, fmt: str) -> bytes:
    """One image the plain way: a new Figure, the drawing, ``savefig``."""
    fig = Figure(figsize=(width / 100, height / 100), dpi=100)
    PLAIN[name](fig, params)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()
