"""The figures of ``python -m bench --live``: ``ticker`` draws the number in a data file of
``BENCH_LIVE_DIR``; its version is that number, so writing the file changes the figure.
``ticker_polled`` draws the same without a version, never cached (no seed): every request reads
the data and draws, as a dashboard that re-runs its query on every refresh does."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure
from pydantic import Field

from figserve import FIGURES, FigureParams, SeededParams

DATA = Path(os.environ.get("BENCH_LIVE_DIR", "."))
FIGURES_SHOWN = 2  # live figures on the benchmark's page: i=0 and i=1


def data_file(i: int) -> Path:
    return DATA / f"data-{i}.txt"


def ticker_version(p: TickerParams) -> str:
    return data_file(p.i).read_text().strip()


class TickerParams(FigureParams):
    i: int = Field(0, ge=0, le=15, description="Which data file.")


class PolledParams(SeededParams):  # without a seed: no-store, drawn on every request
    i: int = Field(0, ge=0, le=15, description="Which data file.")


@FIGURES.figure(
    "ticker",
    title="Ticker",
    description="The number in a data file, as a bar.",
    alt="The number in data file {i}",
    params=TickerParams,
    version=ticker_version,
    refresh=1,
)
def ticker(fig: Figure, p: TickerParams) -> None:
    value = float(data_file(p.i).read_text().strip() or 0)
    ax = fig.add_subplot()
    fig.subplots_adjust(left=0.08, right=0.96, bottom=0.12, top=0.88)
    ax.bar(["value"], [value % 1000], color="#2f5fb3")
    ax.set_ylim(0, 1000)
    ax.set_title(f"data file {p.i}: {value:g}")


@FIGURES.figure(
    "ticker_polled",
    title="Ticker, polled",
    description="The ticker drawn on every request (the polling baseline).",
    alt="The number in data file {i}",
    params=PolledParams,
)
def ticker_polled(fig: Figure, p: PolledParams) -> None:
    ticker(fig, TickerParams(i=p.i))
