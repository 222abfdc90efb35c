"""Test-only figures with update functions: the mechanism of warm figures, tested on figures
whose bytes depend on what usually goes wrong (autoscaled limits, changing bin counts, date
axes, a colour bar, titles). Each ``update`` must leave the kept figure exactly as a fresh draw
with the same parameters would be.

They are module-level functions, so they reach render processes by reference like any figure.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from pydantic import Field

from figserve.figures import FIGURES, FigureParams, Registry

GATE_TIMEOUT = 60.0


class WarmParams(FigureParams):
    n: int = Field(20, ge=2, le=200)
    phase: float = Field(0.0, ge=-5, le=5)
    scale: float = Field(1.0, ge=0.1, le=100)
    title: str = Field("warm", max_length=20)
    seed: int = Field(0, ge=0, le=1000)
    bins: int = Field(10, ge=1, le=50)
    days: int = Field(30, ge=2, le=400)
    start: dt.date = dt.date(2024, 1, 1)
    vmax: float = Field(1.0, ge=0.1, le=10)
    fail: bool = False
    gate: str = Field("", max_length=300)
    tag: str = Field("", max_length=40)


def _wait(p: WarmParams) -> None:
    """Announce the render in the gate folder, then hold it until the test opens the gate."""
    if not p.gate:
        return
    gate = Path(p.gate)
    (gate / f"started-{os.getpid()}-{p.tag}-x").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not ((gate / "open").exists() or (gate / f"open-{p.tag}").exists()):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.005)


# -- a line whose limits follow the data --------------------------------------------------------


def _wave(p: WarmParams) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0, 10, p.n)
    return x, p.scale * np.sin(x + p.phase)


def line(fig: Figure, p: WarmParams) -> dict[str, Any]:
    _wait(p)
    ax = fig.add_subplot()
    (curve,) = ax.plot(*_wave(p), color="C0")
    ax.set_title(p.title)
    return {"ax": ax, "line": curve}


def line_update(fig: Figure, h: dict[str, Any], p: WarmParams) -> dict[str, Any]:
    _wait(p)
    if p.fail:
        raise RuntimeError("this update cannot handle fail=true")
    h["line"].set_data(*_wave(p))
    h["ax"].relim()
    h["ax"].autoscale_view()
    h["ax"].set_title(p.title)
    return h


# -- a histogram whose bin count changes ---------------------------------------------------------


def _sample(p: WarmParams) -> np.ndarray:
    return np.random.default_rng(p.seed).normal(0, p.scale, p.n)


def hist(fig: Figure, p: WarmParams) -> dict[str, Any]:
    ax = fig.add_subplot()
    _, _, bars = ax.hist(_sample(p), bins=p.bins, color="C1")
    ax.set_title(p.title)
    return {"ax": ax, "bars": bars}


def hist_update(fig: Figure, h: dict[str, Any], p: WarmParams) -> dict[str, Any]:
    ax = h["ax"]
    h["bars"].remove()
    _, _, h["bars"] = ax.hist(_sample(p), bins=p.bins, color="C1")
    ax.relim()
    ax.autoscale_view()
    ax.set_title(p.title)
    return h


# -- a date axis -------------------------------------------------------------------------------


def _series(p: WarmParams) -> tuple[np.ndarray, np.ndarray]:
    days = np.arange(np.datetime64(p.start), np.datetime64(p.start) + np.timedelta64(p.days, "D"))
    return days, np.random.default_rng(p.seed).normal(0, 1, p.days).cumsum()


def dates(fig: Figure, p: WarmParams) -> dict[str, Any]:
    ax = fig.add_subplot()
    (curve,) = ax.plot(*_series(p), color="C2")
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return {"ax": ax, "line": curve}


def dates_update(fig: Figure, h: dict[str, Any], p: WarmParams) -> dict[str, Any]:
    h["line"].set_data(*_series(p))
    h["ax"].relim()
    h["ax"].autoscale_view()
    return h


# -- an image with a colour bar --------------------------------------------------------------------


def _grid(p: WarmParams) -> np.ndarray:
    side = max(2, p.n // 4)
    return np.random.default_rng(p.seed).uniform(0, p.vmax, (side, side))


def image(fig: Figure, p: WarmParams) -> dict[str, Any]:
    ax = fig.add_subplot()
    im = ax.imshow(_grid(p), vmin=0, vmax=p.vmax, cmap="viridis")
    fig.colorbar(im, ax=ax)
    ax.set_title(p.title)
    return {"ax": ax, "im": im}


def image_update(fig: Figure, h: dict[str, Any], p: WarmParams) -> dict[str, Any]:
    grid = _grid(p)
    side = grid.shape[0]
    h["im"].set_data(grid)
    h["im"].set_clim(0, p.vmax)
    h["im"].set_extent((-0.5, side - 0.5, side - 0.5, -0.5))
    h["ax"].set_title(p.title)
    return h


WARM_FIGURES = {
    "warm_line": (line, line_update),
    "warm_hist": (hist, hist_update),
    "warm_dates": (dates, dates_update),
    "warm_image": (image, image_update),
}


def registry_with_warm_figures() -> Registry:
    """The shipped figures plus the warm test figures above."""
    registry = FIGURES.copy()
    for name, (draw, update) in WARM_FIGURES.items():
        registry.figure(
            name,
            title=name,
            description=f"{name} (tests only).",
            params=WarmParams,
            update=update,
            width=240,
            height=180,
        )(draw)
    return registry
