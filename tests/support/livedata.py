"""Test-only live figures: their data is a folder a test writes, their version function reads it.

A ``Source`` folder holds ``value`` (the data: a colour name or hex, or ``fail`` to make the
figure raise) and ``mode`` (how the version function behaves: ``ok``, ``raise``, ``hang``,
``list``, ``nan``, ``long``, ``none``). Each version check leaves ``checked-<pid>-<id>`` and
each draw ``drawn-<pid>-<id>`` in the folder, so tests count them across render processes.
The figure fills its background with the colour, so a browser test can read it from a pixel.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from pydantic import Field

from figserve.figures import FigureParams, Registry

FAST_REFRESH = 0.5  # seconds; the least a figure may declare
SLOW_REFRESH = 3600.0


class SourceParams(FigureParams):
    source: str = Field("", max_length=300, description="Folder of the data (tests only).")
    label: str = Field("", max_length=20, pattern=r"^[a-z0-9]*$", description="Free label.")


def source_version(p: SourceParams) -> Any:
    if not p.source:
        return "none"  # the gallery's preview: no folder to read
    folder = Path(p.source)
    (folder / f"checked-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    mode = _read(folder / "mode", "ok")
    if mode == "raise":
        raise RuntimeError(f"cannot read the data at {folder}")
    if mode == "hang":
        time.sleep(300)
    if mode == "list":
        return [1, 2]
    if mode == "nan":
        return float("nan")
    if mode == "long":
        return "x" * 1000
    if mode == "none":
        return None
    return _read(folder / "value", "white")


def draw_source(fig: Figure, p: SourceParams) -> None:
    value = "white"
    if p.source:
        folder = Path(p.source)
        value = _read(folder / "value", value)
        (folder / f"drawn-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()
    if value == "fail":
        raise ValueError("the data has a row the figure cannot draw")
    fig.patch.set_facecolor(value)
    fig.text(0.5, 0.5, value, ha="center")


def _read(path: Path, default: str) -> str:
    try:
        return path.read_text().strip() or default
    except FileNotFoundError:
        return default


LIVE_FIGURES = {"live": FAST_REFRESH, "live_slow": SLOW_REFRESH}


def add_live_figures(registry: Registry) -> Registry:
    for name, refresh in LIVE_FIGURES.items():
        registry.figure(
            name,
            title=name,
            description=f"{name} (tests only).",
            params=SourceParams,
            version=source_version,
            refresh=refresh,
        )(draw_source)
    return registry


class Source:
    """A live figure's data folder."""

    def __init__(self, folder: Path, value: str = "white") -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.set(value)

    def set(self, value: str) -> None:
        """Write new data atomically (a reader sees the old value or the new one)."""
        tmp = self.folder / ".value"
        tmp.write_text(value)
        tmp.replace(self.folder / "value")

    def mode(self, mode: str) -> None:
        tmp = self.folder / ".mode"
        tmp.write_text(mode)
        tmp.replace(self.folder / "mode")

    def query(self, **extra: str) -> str:
        return "&".join(f"{k}={v}" for k, v in {"source": str(self.folder), **extra}.items())

    def params(self, **extra: str) -> dict[str, str]:
        return {"source": str(self.folder), **extra}

    def checks(self) -> int:
        return len(list(self.folder.glob("checked-*")))

    def draws(self) -> int:
        return len(list(self.folder.glob("drawn-*")))
