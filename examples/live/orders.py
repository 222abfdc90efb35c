"""Live figures of your own data: a shop's orders, in a SQLite database that ``feed.py`` fills.

Each figure declares how to learn the version of its data (``version=``, a cheap query) and how
often to ask (``refresh=`` seconds). figserve asks while someone looks, draws each new version
once for everybody, and a page that shows it with ``figure(..., live=True)`` updates by itself.
A figure draws from its data only (never from the clock), so one version is one image.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from pydantic import Field

from figserve import FIGURES, FigureParams

DB = Path(os.environ.get("ORDERS_DB", Path(__file__).with_name("orders.db")))
REGIONS = ("north", "south", "east", "west")
COLOURS = ("#2f5fb3", "#c0392b", "#2e8b57", "#b8860b")


def rows(sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{DB}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute(sql, args).fetchall()


def orders_version(params: FigureParams) -> str:
    """The version of the orders table: new after every order (one indexed query)."""
    count, last = rows("SELECT count(*), max(id) FROM orders")[0]
    return f"{count}-{last}"


class WindowParams(FigureParams):
    minutes: int = Field(10, ge=1, le=1440, description="Minutes before the latest order.")


class SizesParams(FigureParams):
    last: int = Field(200, ge=10, le=10_000, description="Number of latest orders.")
    bins: int = Field(20, ge=2, le=100, description="Number of bins.")


def _recent(minutes: int) -> list[tuple[float, str, float]]:
    """(minutes before the latest order, region, amount) of the orders in the window."""
    found = rows(
        "SELECT ts, region, amount FROM orders WHERE ts >= "
        "(SELECT max(ts) FROM orders) - ? ORDER BY ts",
        minutes * 60.0,
    )
    if not found:
        return []
    latest = found[-1][0]
    return [((ts - latest) / 60, region, amount) for ts, region, amount in found]


def _frame(fig: Figure, xlabel: str, ylabel: str):
    ax = fig.add_subplot()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return ax


@FIGURES.figure(
    "revenue",
    title="Revenue",
    description="Cumulative revenue per region over the latest minutes of orders.",
    alt="Cumulative revenue per region over the last {minutes} minutes of orders",
    params=WindowParams,
    version=orders_version,
    refresh=1,
)
def revenue(fig: Figure, p: WindowParams) -> None:
    recent = _recent(p.minutes)
    ax = _frame(fig, "minutes before the latest order", "revenue")
    for region, colour in zip(REGIONS, COLOURS, strict=True):
        mine = [(t, a) for t, r, a in recent if r == region]
        if mine:
            t, a = zip(*mine, strict=True)
            ax.step(t, np.cumsum(a), where="post", color=colour, label=region)
    ax.set_xlim(-p.minutes, 0)
    ax.legend(loc="upper left", fontsize="small")


@FIGURES.figure(
    "regions",
    title="Revenue by region",
    description="Revenue of each region over the latest minutes of orders.",
    alt="Revenue by region over the last {minutes} minutes of orders",
    params=WindowParams,
    version=orders_version,
    refresh=1,
)
def regions(fig: Figure, p: WindowParams) -> None:
    recent = _recent(p.minutes)
    totals = [sum(a for _, r, a in recent if r == region) for region in REGIONS]
    ax = _frame(fig, "region", "revenue")
    ax.bar(REGIONS, totals, color=COLOURS)


@FIGURES.figure(
    "order_sizes",
    title="Order sizes",
    description="Histogram of the amounts of the latest orders.",
    alt="Histogram of the amounts of the last {last} orders",
    params=SizesParams,
    version=orders_version,
    refresh=1,
)
def order_sizes(fig: Figure, p: SizesParams) -> None:
    amounts = [a for (a,) in rows("SELECT amount FROM orders ORDER BY id DESC LIMIT ?", p.last)]
    ax = _frame(fig, "amount", "orders")
    ax.hist(amounts, bins=p.bins, range=(0, 200), color="#2f5fb3", edgecolor="white")
