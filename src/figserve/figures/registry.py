"""The figure registry: declare a figure once, get its routes, gallery entry, catalog and docs.

A figure is a pure function ``draw(fig, params)`` that draws on a fresh
``matplotlib.figure.Figure`` plus a pydantic model of its parameters. Nothing here knows about
HTTP or threads; the renderer decides where and how a figure is drawn and encoded.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from .declaration import ALT_MAX, check_declaration

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
# Query keys the image routes use for size and format, and the keywords of the pages'
# ``figure()`` helper: figure parameters may not take them.
RESERVED_NAMES = frozenset(
    {"w", "h", "dpr", "dpi", "format", "alt", "sizes", "loading", "class_", "live"}
)
MAX_SEED = 2**32 - 1
TEXT_MAX = 80

# Characters no figure text may hold: controls, format characters (zero-width space, byte order
# mark: the PDF writer fails on some), private use, surrogates, unassigned code points, and line
# or paragraph separators, which matplotlib does not break lines on.
_UNDRAWABLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})


@cache
def _glyphs() -> frozenset[int]:
    """Code points the font of figure text has a glyph for (DejaVu Sans unless configured).

    The first font of the family is enough: a character it has is never looked up elsewhere, so
    it never warns about a missing glyph, whatever fallback fonts a machine has.
    """
    font = FT2Font(font_manager.findfont(font_manager.FontProperties()))
    return frozenset(font.get_charmap())


def _describe(char: str) -> str:
    """``U+200B (ZERO WIDTH SPACE)``: a character named so a person can find it."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def _undrawable(chars: Iterable[str]) -> set[str]:
    """The characters of ``chars`` that figure text may not hold."""
    glyphs = _glyphs()
    return {
        c
        for c in set(chars)
        if ord(c) not in glyphs or unicodedata.category(c) in _UNDRAWABLE_CATEGORIES
    }


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be drawn in every format without a warning, or None if it can.

    One rule for every text a figure draws (titles, text parameters, uploaded column names and
    labels): each character has a glyph in the figure font and is not a control, format,
    private-use, unassigned or separator character, and the text does not open with a
    combining mark (it would have no letter to mark).
    """
    if text and unicodedata.category(text[0]).startswith("M"):
        return f"{_describe(text[0])} must follow the character it marks"
    bad = _undrawable(text)
    if not bad:
        return None
    first = next(c for c in text if c in bad)
    return _char_problem(first)


def _char_problem(char: str) -> str:
    """The message for a character ``_undrawable`` returned."""
    if unicodedata.category(char) in _UNDRAWABLE_CATEGORIES:
        return f"{_describe(char)} cannot be drawn (a control or invisible character)"
    return f"{_describe(char)} cannot be drawn (the figure font has no glyph for it)"


def _class(code_points: list[int]) -> str:
    """A regex character class of ``code_points``, as ranges; Python's ``re`` and ECMAScript
    (unicode mode) read it alike: BMP characters escaped, others written as themselves."""

    def char(c: int) -> str:
        return f"\\u{c:04x}" if c <= 0xFFFF else chr(c)

    ranges: list[list[int]] = []
    for c in code_points:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "[" + "".join(char(a) if a == b else f"{char(a)}-{char(b)}" for a, b in ranges) + "]"


@cache
def drawable_pattern() -> str:
    """``text_problem`` as a regular expression: the text of a schema's ``DrawableText``."""
    ok = sorted(c for c in _glyphs() if unicodedata.category(chr(c)) not in _UNDRAWABLE_CATEGORIES)
    first = [c for c in ok if not unicodedata.category(chr(c)).startswith("M")]
    return f"^(?:{_class(first)}{_class(ok)}*)?$"


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def _mark_text(schema: dict[str, Any]) -> None:
    """Mark every free-text property (``x-drawable``): the OpenAPI document gives it the
    pattern of drawable text (``drawable_pattern``)."""
    for prop in schema.get("properties", {}).values():
        for variant in prop.get("anyOf", [prop]):
            if variant.get("type") == "string" and not {"enum", "format", "const"} & set(variant):
                variant["x-drawable"] = True


class FigureParams(BaseModel):
    """Base of every parameter model: unknown keys and NaN/inf are errors, values immutable.

    Every text parameter must be drawable (see ``text_problem``): a figure draws its text, and
    refusing a character up front beats a failed or warning render later. Dates are given as
    ``YYYY-MM-DD`` only (not as timestamps or times), as the schema says.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, json_schema_extra=_mark_text
    )

    @field_validator("*", mode="before")
    @classmethod
    def _dates_as_text(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is dt.date:
                try:
                    if not _ISO_DATE.fullmatch(value):
                        raise ValueError(value)
                    return dt.date.fromisoformat(value)
                except ValueError:
                    raise PydanticCustomError(
                        "date_text", "a date of the calendar as YYYY-MM-DD"
                    ) from None
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _drawable_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            problem = text_problem(value)
            if problem:
                raise PydanticCustomError("undrawable_text", "{problem}", {"problem": problem})
        return value


class SeededParams(FigureParams):
    """Parameters of a random figure: without a seed every render is a new sample."""

    seed: int | None = Field(
        None,
        ge=0,
        le=MAX_SEED,
        description="Random seed. Given, the figure is reproducible and cacheable.",
    )


def title_field(default: str = "") -> Any:
    """A user-supplied title: short, drawable (``text_problem``), drawn with math parsing off."""
    return Field(default, max_length=TEXT_MAX, description="Title text.")


def rng_for(params: FigureParams) -> np.random.Generator:
    """A generator of its own per render, so threads never share random state."""
    return np.random.default_rng(getattr(params, "seed", None))


# Draws a figure on a fresh ``Figure``. It may return handles (any object: the artists it made),
# which its update function gets back.
DrawFn = Callable[[Figure, Any], Any]
# Moves a figure that its draw function (or an earlier update) drew to new parameters, in place:
# ``update(fig, handles, params) -> handles``. The result must be pixel-identical to a fresh draw
# with the same parameters; a figure without one is always drawn fresh.
UpdateFn = Callable[[Figure, Any, Any], Any]
# The version of the data a figure draws: ``version(params) -> str | int | float``, cheap (a
# file's size and mtime, ``SELECT max(updated_at)``, an HTTP ETag).
VersionFn = Callable[[Any], Any]
MIN_REFRESH = 0.5  # seconds
MAX_REFRESH = 86400.0
DEFAULT_REFRESH = 30.0


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
    # Render cost: how to move a kept figure to new parameters instead of drawing it again.
    update: UpdateFn | None = None
    # Live figures: how to learn the version of the data the figure draws, and how often
    # (seconds) to ask. None: the figure depends on its code and parameters only.
    version: VersionFn | None = None
    refresh: float = DEFAULT_REFRESH

    @property
    def random(self) -> bool:
        """Random figures are only deterministic (and cacheable) when given a seed."""
        return "seed" in self.params.model_fields

    def deterministic(self, params: FigureParams) -> bool:
        return not self.random or getattr(params, "seed", None) is not None

    def alt_text(self, params: FigureParams) -> str:
        """The alt text for ``params``: the template filled in (checked at registration), or the
        description should it fail all the same; never longer than ``ALT_MAX`` characters."""
        try:
            text = self.alt.format(**params.model_dump())
        except Exception:
            text = self.description
        return text if len(text) <= ALT_MAX else text[: ALT_MAX - 1] + "\u2026"


def origin(spec: FigureSpec) -> str:
    """Where a figure was declared, as a person looks for it: its function's module."""
    module = spec.draw.__module__
    if module.startswith("figserve.figures."):
        return f"{module} (shipped with figserve)"
    return f"module {module}"


class Registry:
    """An ordered catalog of figures; the app takes one, tests may build their own."""

    def __init__(self, specs: list[FigureSpec] | None = None) -> None:
        self._specs: dict[str, FigureSpec] = {}
        for spec in specs or []:
            self.add(spec)

    def add(self, spec: FigureSpec) -> FigureSpec:
        if not re.match(NAME_PATTERN, spec.name):
            raise ValueError(f"figure name {spec.name!r} must match {NAME_PATTERN}")
        taken = self._specs.get(spec.name)
        if taken is not None:
            raise ValueError(
                f"figure {spec.name!r} of {origin(spec)} clashes with the figure "
                f"{taken.name!r} of {origin(taken)}: give one of them another name"
            )
        check_declaration(spec, RESERVED_NAMES, FigureParams)
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
        update: UpdateFn | None = None,
        version: VersionFn | None = None,
        refresh: float | None = None,
    ) -> Callable[[DrawFn], DrawFn]:
        """Decorator that registers ``draw`` under ``name``.

        ``update``: see ``UpdateFn``. ``version`` and ``refresh``: see ``VersionFn``; the
        version is asked at most once per ``refresh`` seconds per figure and parameters."""
        if refresh is not None and version is None:
            raise ValueError(f"figure {name!r}: refresh= needs version= (what to refresh)")
        for role, fn in (("update", update), ("version", version)):
            if fn is not None and not callable(fn):
                raise ValueError(f"figure {name!r}: {role}= must be a function")
        every = DEFAULT_REFRESH if refresh is None else float(refresh)
        if not MIN_REFRESH <= every <= MAX_REFRESH:
            raise ValueError(
                f"figure {name!r}: refresh={refresh!r} must be from {MIN_REFRESH:g} to "
                f"{MAX_REFRESH:g} seconds"
            )

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
                    update=update,
                    version=version,
                    refresh=every,
                )
            )
            return draw

        return register

    def get(self, name: str) -> FigureSpec | None:
        return self._specs.get(name)

    def discard(self, name: str) -> None:
        """Forget a figure (one whose module failed to load)."""
        self._specs.pop(name, None)

    def copy(self) -> Registry:
        return Registry(list(self._specs.values()))

    def __iter__(self) -> Iterator[FigureSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs
