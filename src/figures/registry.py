"""The figure registry: declare a figure once, get its routes, gallery entry, catalog and docs.

A figure is a pure function ``draw(fig, params)`` that draws on a fresh
``matplotlib.figure.Figure`` plus a pydantic model of its parameters. Nothing here knows about
HTTP or threads; the renderer decides where and how a figure is drawn and encoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Query keys the image routes use for size and format; figure parameters may not take them.
RESERVED_NAMES = frozenset({"w", "h", "dpr", "dpi", "format"})
MAX_SEED = 2**32 - 1
TEXT_MAX = 80
# Printable text only: control characters have no business in a title.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$"


class FigureParams(BaseModel):
    """Base of every parameter model: unknown keys and NaN/inf are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SeededParams(FigureParams):
    """Parameters of a random figure: without a seed every render is a new sample."""

    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed. Given, the figure is reproducible and cached forever.",
    )


def title_field(default: str = "") -> Any:
    """A user-supplied title: short, printable, drawn with math parsing off."""
    return Field(default, max_length=TEXT_MAX, pattern=TEXT_PATTERN, description="Title text.")


def rng_for(params: FigureParams) -> np.random.Generator:
    """A generator of its own per render, so threads never share random state."""
    return np.random.default_rng(getattr(params, "seed", None))


DrawFn = Callable[[Figure, Any], None]


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    description: str
    params: type[FigureParams]
    draw: DrawFn
    # Alt text with ``{field}`` placeholders filled from the parameters.
    alt: str
    # Size in CSS pixels when a request does not give one.
    width: int = 400
    height: int = 300

    @property
    def random(self) -> bool:
        """Random figures are only deterministic (and cacheable) when given a seed."""
        return "seed" in self.params.model_fields

    def deterministic(self, params: FigureParams) -> bool:
        return not self.random or getattr(params, "seed", None) is not None

    def alt_text(self, params: FigureParams) -> str:
        return self.alt.format(**params.model_dump())


class Registry:
    """An ordered catalog of figures; the app takes one, tests may build their own."""

    def __init__(self, specs: list[FigureSpec] | None = None) -> None:
        self._specs: dict[str, FigureSpec] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: FigureSpec) -> FigureSpec:
        import re

        if not re.match(NAME_PATTERN, spec.name):
            raise ValueError(f"figure name {spec.name!r} must match {NAME_PATTERN}")
        if spec.name in self._specs:
            raise ValueError(f"figure {spec.name!r} is already registered")
        clash = RESERVED_NAMES & set(spec.params.model_fields)
        if clash:
            raise ValueError(f"figure {spec.name!r} uses reserved parameter names {sorted(clash)}")
        self._specs[spec.name] = spec
        return spec

    def figure(
        self,
        name: str,
        *,
        title: str,
        description: str,
        params: type[FigureParams],
        alt: str | None = None,
        width: int = 400,
        height: int = 300,
    ) -> Callable[[DrawFn], DrawFn]:
        """Decorator that registers ``draw`` under ``name``."""

        def register(draw: DrawFn) -> DrawFn:
            self.add(
                FigureSpec(
                    name=name,
                    title=title,
                    description=description,
                    params=params,
                    draw=draw,
                    alt=alt or description,
                    width=width,
                    height=height,
                )
            )
            return draw

        return register

    def get(self, name: str) -> FigureSpec | None:
        return self._specs.get(name)

    def copy(self) -> Registry:
        return Registry(list(self._specs.values()))

    def __iter__(self) -> Iterator[FigureSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs
