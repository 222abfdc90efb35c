"""One parse of "figure + parameters + image options" for every way a render is asked for.

Query strings and forms (flat text values), JSON specs (``/api/render``, job items), uploads and
stored job items all come through ``parse_flat`` or ``parse_nested``, which meet in one
validation; every problem with every parameter is reported at once as a typed ``Invalid``.
Nothing here knows about HTTP: the web layer turns ``Invalid`` into a 400.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .figures import FigureParams, FigureSpec, Registry
from .json_numbers import strict_json
from .render import Format, ImageOptions, LimitExceeded, RenderJob, job_for

OPTION_NAMES = frozenset(ImageOptions.model_fields)
ModelT = TypeVar("ModelT", bound=BaseModel)
MAX_TEXT_VALUE = 200  # characters of one text value; no parameter needs more
MAX_NUMBER_TEXT = 40  # characters of one number given as text
# Numbers given as text: ASCII digits only (``str.isdigit`` and ``\d`` accept superscripts and
# the digits of other scripts, which ``int`` then refuses or reads).
DECIMAL = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(rf"{DECIMAL}(?:[eE][+-]?[0-9]{{1,4}})?", re.ASCII)


@dataclass(frozen=True)
class FieldError:
    """What is wrong with one parameter, named as the client gave it."""

    param: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"param": self.param, "message": self.message}


class Invalid(ValueError):
    """A request with wrong parameters: every one of them, each with a message."""

    def __init__(self, errors: Sequence[FieldError], title: str = "Invalid parameters") -> None:
        self.errors = list(errors)
        self.title = title
        super().__init__("; ".join(f"{e.param}: {e.message}" for e in self.errors))


def shown(key: str) -> str:
    """A key as it may be echoed in an error (keys have no length limit of their own)."""
    return key if len(key) <= MAX_TEXT_VALUE else key[: MAX_TEXT_VALUE - 1] + "…"


def pydantic_errors(exc: ValidationError, prefix: str = "") -> list[FieldError]:
    """Pydantic's errors as ``FieldError``s a person can act on."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "body"
        message = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] not in {"extra_forbidden", "missing"} and "input" in err:
            message += f" (got {_short(err['input'])})"
        out.append(FieldError(prefix + loc, message))
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unknown_keys(keys: Iterable[str], known: Iterable[str], prefix: str = "") -> list[FieldError]:
    """An error for every key not in ``known``, whatever its value (a blank one too)."""
    known = frozenset(known)
    return [FieldError(prefix + shown(k), "unknown parameter") for k in keys if k not in known]


def parse_count(
    text: str, param: str, *, default: int, largest: int
) -> tuple[int, list[FieldError]]:
    """A whole number of ASCII digits from 1 to ``largest``; blank gives ``default``."""
    if text == "":
        return default, []
    if len(text) <= MAX_NUMBER_TEXT and _INT_TEXT.fullmatch(text):
        value = int(text)
        if 1 <= value <= largest:
            return value, []
    return 0, [FieldError(param, f"a whole number from 1 to {largest} (got {text[:20]!r})")]


@functools.cache
def _number_fields(model: type[BaseModel]) -> dict[str, re.Pattern[str]]:
    """The fields of ``model`` that hold numbers, with the text pattern each accepts."""
    out = {}
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            kinds = {a for a in typing.get_args(annotation) if a is not type(None)}
        else:
            kinds = {annotation}
        if kinds == {int}:
            out[name] = _INT_TEXT
        elif kinds and kinds <= {int, float}:
            out[name] = _FLOAT_TEXT
    return out


def number_errors(
    values: Mapping[str, Any], models: Iterable[type[BaseModel]], prefix: str = ""
) -> list[FieldError]:
    """Errors for text values of number fields that are not plain ASCII numbers of at most
    ``MAX_NUMBER_TEXT`` characters: whole numbers for integer fields, decimals (with an optional
    exponent) for the others. Blank values are "not given" and pass."""
    patterns: dict[str, re.Pattern[str]] = {}
    for model in models:
        patterns.update(_number_fields(model))
    errors = []
    for key, value in values.items():
        pattern = patterns.get(key)
        if pattern is None or not isinstance(value, str) or value == "":
            continue
        if len(value) > MAX_NUMBER_TEXT or not pattern.fullmatch(value):
            kind = "a whole number" if pattern is _INT_TEXT else "a number"
            example = "3" if pattern is _INT_TEXT else "2.5"
            message = f"{kind} in ASCII digits, such as {example} (got {value[:20]!r})"
            errors.append(FieldError(prefix + key, message))
    return errors


# -- the one validation --------------------------------------------------------------------


def _validate(
    model: type[FigureParams],
    param_values: Mapping[str, Any],
    option_values: Mapping[str, Any],
    default_size: tuple[int, int],
    *,
    params_prefix: str,
    options_prefix: str,
    errors: list[FieldError],
    json_types: bool = False,
) -> tuple[FigureParams, ImageOptions]:
    """Validate parameters and image options (the size defaults to ``default_size``); raise
    ``Invalid`` with ``errors`` and every new one, if there are any.

    Text values (a query, a form) are read as their fields' types; JSON values must have them
    already (``json_types``): 5 for an integer, never "5" or true, as the schema says."""
    options = {k: v for k, v in option_values.items() if v is not None}
    options.setdefault("w", default_size[0])
    options.setdefault("h", default_size[1])
    params = opts = None
    try:
        params = _model_of(model, dict(param_values), json_types)
    except ValidationError as exc:
        errors += pydantic_errors(exc, params_prefix)
    try:
        opts = _model_of(ImageOptions, options, json_types)
    except ValidationError as exc:
        errors += pydantic_errors(exc, options_prefix)
    if errors or params is None or opts is None:
        raise Invalid(errors)
    return params, opts


def _model_of(model: type[ModelT], values: dict[str, Any], json_types: bool) -> ModelT:
    if json_types:
        return strict_json(model, values)
    return model.model_validate(values)


def parse_flat(
    model: type[FigureParams],
    values: Mapping[str, str],
    *,
    default_size: tuple[int, int],
    fixed: Mapping[str, Any] | None = None,
    prefix: str = "",
    extra: Iterable[str] = (),
) -> tuple[FigureParams, ImageOptions]:
    """Parameters and image options side by side as text (a query string, a form).

    Unknown keys are errors whatever their value; numbers must be plain ASCII; a blank value
    is "not given" (an HTML form sends empty fields). ``fixed`` holds values taken from the
    path (format, mean, var), which ``values`` may not repeat. Keys in ``extra`` are the
    caller's own and are passed over.
    """
    fixed = dict(fixed or {})
    known = set(model.model_fields) | OPTION_NAMES
    errors = unknown_keys([k for k in values if k not in set(extra)], known, prefix)
    numbers = number_errors(values, (model, ImageOptions), prefix)
    errors += numbers
    bad = {e.param for e in numbers}
    given = {k: v for k, v in values.items() if k in known and v != "" and prefix + k not in bad}
    errors += [
        FieldError(prefix + key, "already given in the path")
        for key in sorted(set(given) & set(fixed))
    ]
    given.update(fixed)
    return _validate(
        model,
        {k: v for k, v in given.items() if k not in OPTION_NAMES},
        {k: v for k, v in given.items() if k in OPTION_NAMES},
        default_size,
        params_prefix=prefix,
        options_prefix=prefix,
        errors=errors,
    )


def parse_nested(
    model: type[FigureParams],
    params: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    default_size: tuple[int, int],
    prefix: str = "",
    params_prefix: str | None = None,
) -> tuple[FigureParams, ImageOptions]:
    """Parameters in an object of their own beside the image options (a JSON spec)."""
    return _validate(
        model,
        params,
        options,
        default_size,
        params_prefix=prefix + "params." if params_prefix is None else params_prefix,
        options_prefix=prefix,
        errors=[],
        json_types=True,
    )


# -- a render of a registered figure -------------------------------------------------------


@dataclass(frozen=True)
class RenderRequest:
    """A render that passed every check, with the job that renders it."""

    spec: FigureSpec
    params: FigureParams
    options: ImageOptions
    job: RenderJob

    @classmethod
    def of(
        cls,
        spec: FigureSpec,
        params: FigureParams,
        options: ImageOptions,
        max_pixels: int,
        prefix: str = "",
        data: str | None = None,
        *,
        png_level: int | None = None,
    ) -> RenderRequest:
        """The render of ``spec`` (``data``: the version of the data it draws; ``png_level``:
        see ``job_for``); ``Invalid`` if its image is larger than ``max_pixels``."""
        try:
            job = job_for(spec, params, options, max_pixels, data, png_level=png_level)
        except LimitExceeded as exc:
            raise Invalid([FieldError(prefix + exc.param, str(exc))]) from None
        return cls(spec, params, options, job)

    @property
    def pixels(self) -> int:
        return self.job.canvas.pixels

    def stored(self) -> dict[str, Any]:
        """Plain JSON, for the job store; ``from_stored`` turns it back into a render."""
        return {
            "figure": self.spec.name,
            "params": self.params.model_dump(mode="json"),
            "options": self.options.model_dump(mode="json", exclude_unset=True),
        }


class RenderSpec(BaseModel):
    """A figure to render: which one, its parameters, and the output format and size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    figure: str = Field(max_length=32, description="Name of a figure from GET /api/figures.")
    params: dict[str, Any] = Field(default_factory=dict, description="The figure's parameters.")
    format: Format = "png"
    # Bounds are ImageOptions', checked with the figure's parameters (every error at once).
    w: int | None = Field(None, description="Width in CSS pixels (default: the figure's).")
    h: int | None = Field(None, description="Height in CSS pixels (default: the figure's).")
    dpr: float | None = Field(None, description="Device pixel ratio, 1-3.")
    dpi: int | None = Field(None, description="Dots per inch; when given, used instead of dpr.")


def unknown_figure(registry: Registry, name: str, param: str) -> FieldError:
    names = ", ".join(s.name for s in registry)
    return FieldError(param, f"no figure {name[:40]!r}; one of: {names}")


def from_spec(
    registry: Registry,
    raw: Any,
    max_pixels: int,
    *,
    prefix: str = "",
    defaults: Mapping[str, Any] | None = None,
    png_level: int | None = None,
) -> RenderRequest:
    """A ``RenderSpec``-shaped object (``/api/render``'s body, one item of a job) as a render."""
    if not isinstance(raw, dict):
        raise Invalid([FieldError(prefix.rstrip(".") or "body", "expected an object")])
    values = {**(defaults or {}), **raw}
    errors: list[FieldError] = []
    try:
        spec_in = strict_json(RenderSpec, values)
    except ValidationError as exc:
        errors = pydantic_errors(exc, prefix)
        if any(e["type"] != "extra_forbidden" for e in exc.errors()):
            raise Invalid(errors) from None
        # Only unknown keys: check the rest too, so every error is listed at once.
        spec_in = strict_json(
            RenderSpec, {k: values[k] for k in RenderSpec.model_fields & values.keys()}
        )
    spec = registry.get(spec_in.figure)
    if spec is None:
        raise Invalid([*errors, unknown_figure(registry, spec_in.figure, prefix + "figure")])
    given = spec_in.model_dump(exclude_unset=True)
    options = {k: v for k, v in given.items() if k in OPTION_NAMES}
    try:
        params, opts = parse_nested(
            spec.params,
            spec_in.params,
            options,
            default_size=(spec.width, spec.height),
            prefix=prefix,
        )
    except Invalid as exc:
        raise Invalid([*errors, *exc.errors]) from None
    if errors:
        raise Invalid(errors)
    return RenderRequest.of(spec, params, opts, max_pixels, prefix, png_level=png_level)


def from_stored(registry: Registry, item: Mapping[str, Any], max_pixels: int) -> RenderRequest:
    """A job item as the store keeps it (see ``RenderRequest.stored``), validated again: the
    server may have been upgraded since it was queued."""
    spec = registry.get(item["figure"])
    if spec is None:
        raise Invalid([unknown_figure(registry, item["figure"], "figure")])
    params, opts = parse_nested(
        spec.params, item["params"], item["options"], default_size=(spec.width, spec.height)
    )
    return RenderRequest.of(spec, params, opts, max_pixels)
