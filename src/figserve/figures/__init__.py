"""Figures: the registry and the shipped catalog (pure functions, no web, no threads)."""

from .catalog import FIGURES
from .registry import FigureParams, FigureSpec, Registry, SeededParams, rng_for, title_field

__all__ = [
    "FIGURES",
    "FigureParams",
    "FigureSpec",
    "Registry",
    "SeededParams",
    "rng_for",
    "title_field",
]
