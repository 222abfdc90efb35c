"""From request data to validated figure parameters and image options (or a 400 Problem)."""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from quart import request
from werkzeug.datastructures import MultiDict

from ..figures import FigureParams, FigureSpec
from ..render import ImageOptions
from .errors import Problem, invalid, validation_errors

OPTION_NAMES = frozenset(ImageOptions.model_fields)
MAX_QUERY_VALUE = 200  # characters; no parameter needs more
MAX_NUMBER_TEXT = 40  # characters of one number in a query or form
MAX_PATH_NUMBER = 400  # a double written out in full (no exponent) has at most 330
# Numbers in paths, queries and forms: ASCII digits only (``str.isdigit`` and ``\d`` accept
# superscripts and the digits of other scripts, which ``int`` then refuses or reads).
_DECIMAL = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_INT_TEXT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT_TEXT = re.compile(rf"{_DECIMAL}(?:[eE][+-]?[0-9]{{1,4}})?", re.ASCII)
_MEAN_VAR = re.compile(rf"({_DECIMAL})_({_DECIMAL})", re.ASCII)


def parse_mean_var(text: str) -> tuple[float, float]:
    """``"5_3"`` or ``"-2.5_0.5"`` as two floats; anything else is a 400 naming the format."""
    match = _MEAN_VAR.fullmatch(text) if len(text) <= 2 * MAX_PATH_NUMBER + 1 else None
    if not match:
        raise invalid(
            [
                {
                    "param": "mean_var",
                    "message": f"expected <mean>_<var>, two decimal numbers such as 5_3 or "
                    f"-2.5_0.5 (got {text[:40]!r})",
                }
            ],
            title="Malformed path",
        )
    return float(match.group(1)), float(match.group(2))


def format_number(value: float) -> str:
    """A number as it appears in a path: plain decimal, no exponent, no trailing zeros."""
    return np.format_float_positional(value, trim="-")


def single_values(args: MultiDict, repeatable: Iterable[str] = ()) -> dict[str, str]:
    """Query or form arguments as a plain dict; a key given twice is ambiguous, so it is an
    error (except the ``repeatable`` ones, which are left out). Values are length-limited."""
    out: dict[str, str] = {}
    errors = []
    repeatable = frozenset(repeatable)
    for key in args:
        values = args.getlist(key)
        if key in repeatable:
            if any(len(v) > MAX_QUERY_VALUE for v in values):
                message = f"longer than {MAX_QUERY_VALUE} characters"
                errors.append({"param": _shown(key), "message": message})
        elif len(values) > 1:
            errors.append({"param": _shown(key), "message": "given more than once"})
        elif len(values[0]) > MAX_QUERY_VALUE:
            message = f"longer than {MAX_QUERY_VALUE} characters"
            errors.append({"param": _shown(key), "message": message})
        else:
            out[key] = values[0]
    if errors:
        raise invalid(errors)
    return out


def _shown(key: str) -> str:
    # Keys are echoed in errors: long ones are cut (the value limits do not apply to keys).
    return key if len(key) <= MAX_QUERY_VALUE else key[: MAX_QUERY_VALUE - 1] + "…"


def unknown_keys(keys: Iterable[str], known: Iterable[str]) -> list[dict[str, str]]:
    """An error for every key not in ``known``, whatever its value (a blank one too)."""
    known = frozenset(known)
    return [{"param": _shown(k), "message": "unknown parameter"} for k in keys if k not in known]


def no_query() -> list[dict[str, str]]:
    """Errors for a query string on a route that takes none."""
    return unknown_keys(request.args.keys(), ())


def parse_count(text: str, param: str, *, default: int, largest: int) -> tuple[int, list[dict]]:
    """A whole number of ASCII digits between 1 and ``largest``; blank gives ``default``."""
    if text == "":
        return default, []
    if len(text) <= MAX_NUMBER_TEXT and _INT_TEXT.fullmatch(text):
        value = int(text)
        if 1 <= value <= largest:
            return value, []
    message = f"a whole number from 1 to {largest} (got {text[:20]!r})"
    return 0, [{"param": param, "message": message}]


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
) -> list[dict[str, str]]:
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
            message = f"{kind} in ASCII digits, such as {'3' if pattern is _INT_TEXT else '2.5'}"
            errors.append({"param": prefix + key, "message": f"{message} (got {value[:20]!r})"})
    return errors


def parse_figure_request(
    spec: FigureSpec,
    values: Mapping[str, Any],
    *,
    fixed: Mapping[str, Any] | None = None,
) -> tuple[FigureParams, ImageOptions]:
    """Split ``values`` into the figure's parameters and the image options, validating both.

    ``fixed`` holds values taken from the path (format, mean, var); the query may not repeat them.
    Every problem with every parameter is reported at once.
    """
    fixed = dict(fixed or {})
    # Unknown keys are errors whatever their value: a blank one is still a typo.
    known = set(spec.params.model_fields) | OPTION_NAMES
    errors = unknown_keys(values, known)
    numbers = number_errors(values, (spec.params, ImageOptions))
    errors += numbers
    bad = {e["param"] for e in numbers}
    values = {k: v for k, v in _blank_to_default(values).items() if k in known and k not in bad}
    for key in sorted(set(values) & set(fixed)):
        errors.append({"param": key, "message": "already given in the path"})
    option_values = {k: v for k, v in values.items() if k in OPTION_NAMES}
    param_values = {k: v for k, v in values.items() if k not in OPTION_NAMES}
    option_values.setdefault("w", spec.width)
    option_values.setdefault("h", spec.height)
    for key, value in fixed.items():
        (option_values if key in OPTION_NAMES else param_values)[key] = value
    params = opts = None
    try:
        params = spec.params.model_validate(param_values)
    except ValidationError as exc:
        errors += validation_errors(exc)
    try:
        opts = ImageOptions.model_validate(option_values)
    except ValidationError as exc:
        errors += validation_errors(exc)
    if errors:
        raise invalid(errors)
    assert params is not None and opts is not None
    return params, opts


def _blank_to_default(values: Mapping[str, Any]) -> dict[str, Any]:
    # An HTML form sends empty fields as "": treat them as "not given" (e.g. no seed).
    return {k: v for k, v in values.items() if v != ""}


def spec_or_404(registry: Any, name: str) -> FigureSpec:
    spec = registry.get(name)
    if spec is None:
        names = ", ".join(s.name for s in registry)
        raise Problem(
            404, "Unknown figure", f"There is no figure {name[:40]!r}; try one of: {names}."
        )
    return spec
