"""Warm figures: drawn figures a render process keeps, to update instead of drawing anew.

A figure that declares ``update=`` (see ``figures/registry.py``) is drawn once with ``draw`` and
then moved to new parameters with ``update(fig, handles, params) -> handles``, which costs a
fraction of a fresh draw (``encode.render_warm``). A render process keeps a few such figures,
least recently used first out, keyed by ``warm_key``: figure name, code version, canvas pixels
and dpi (the format is not part of it: one kept figure is saved as PNG, SVG or PDF alike).

Kept figures are this process's own state: they are dropped whenever the process had to put back
something a figure changed (``hygiene.py``), and with the process when it is recycled. The
worker learns which keys a process holds from each reply (``held``), and routes a render to an
idle process that holds its figure.
"""

from __future__ import annotations

import traceback
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

ERROR_CHARS = 2000


@dataclass
class Kept:
    fig: Figure
    handles: Any


class WarmFigures:
    """At most ``limit`` kept figures, least recently used dropped first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._kept: OrderedDict[str, Kept] = OrderedDict()

    def take(self, key: str) -> Kept | None:
        """The kept figure of ``key``, taken out (a render owns it until it gives it back)."""
        return self._kept.pop(key, None)

    def give(self, key: str, kept: Kept) -> None:
        if self.limit <= 0:
            return
        self._kept[key] = kept
        self._kept.move_to_end(key)
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)

    def drop_all(self) -> None:
        self._kept.clear()

    def keys(self) -> list[str]:
        return list(self._kept)


_installed: WarmFigures | None = None


def install(limit: int) -> None:
    """Keep up to ``limit`` figures in this (render) process; 0 keeps none."""
    global _installed
    _installed = WarmFigures(limit) if limit > 0 else None


def installed() -> WarmFigures | None:
    """This process's kept figures, or None where figures are not kept (the worker, tests)."""
    return _installed


def drop_all() -> None:
    if _installed is not None:
        _installed.drop_all()


def held() -> list[str]:
    return _installed.keys() if _installed is not None else []


def warm_key(name: str, version: str | None, width_px: int, height_px: int, dpi: float) -> str:
    return f"{name}/{version}/{width_px}x{height_px}@{dpi:.6g}"


def describe_error(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except Exception:
        text = type(exc).__name__
    return text[:ERROR_CHARS]
