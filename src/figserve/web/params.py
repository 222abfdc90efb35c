"""Reading a request's path and query: the seed's ``<mean>_<var>``, single-valued arguments,
and the figure a path names (400 or 404 otherwise)."""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from pydantic import ValidationError
from quart import request
from werkzeug.datastructures import MultiDict

from ..figures import FigureSpec, Registry
from ..figures.catalog import NormalParams
from ..validation import (
    DECIMAL,
    MAX_TEXT_VALUE,
    FieldError,
    pydantic_errors,
    shown,
    unknown_keys,
)
from .errors import Problem, field_error, invalid

MAX_PATH_NUMBER = 400  # a double written out in full (no exponent) has at most 330
MEAN_VAR_MAX = 2 * MAX_PATH_NUMBER + 1
_MEAN_VAR = re.compile(rf"({DECIMAL})_({DECIMAL})", re.ASCII)
# What the path takes, exactly (the OpenAPI document states this pattern): a mean from -1e6 to
# 1e6, and a var above 0 (at most 300 zeros after the point, so it never rounds to 0) up to
# 1e6, both as plain decimals.
_MEAN = r"[+-]?0*(?:[0-9]{1,6}(?:\.[0-9]*)?|1000000(?:\.0*)?|\.[0-9]+)"
_VAR = r"\+?0*(?:[1-9][0-9]{0,5}(?:\.[0-9]*)?|1000000(?:\.0*)?|\.0{0,300}[1-9][0-9]*)"
MEAN_VAR_PATTERN = rf"^(?:{_MEAN})_(?:{_VAR})$"
_IN_RANGE = re.compile(MEAN_VAR_PATTERN, re.ASCII)


def mean_var_in_range(text: str) -> bool:
    return len(text) <= MEAN_VAR_MAX and _IN_RANGE.fullmatch(text) is not None


def parse_mean_var(text: str) -> tuple[float, float]:
    """``"5_3"`` or ``"-2.5_0.5"`` as two floats, within the normal figure's range; anything
    else is a 400 naming the format, or the number out of range."""
    match = _MEAN_VAR.fullmatch(text) if len(text) <= MEAN_VAR_MAX else None
    if not match:
        raise field_error(
            "mean_var",
            "expected <mean>_<var>, two decimal numbers such as 5_3 or -2.5_0.5 "
            f"(got {text[:40]!r})",
            title="Malformed path",
        )
    mean, var = float(match.group(1)), float(match.group(2))
    if not _IN_RANGE.fullmatch(text):
        try:
            NormalParams(mean=mean, var=var)
        except ValidationError as exc:
            raise invalid(pydantic_errors(exc)) from None
        # Within the figure's bounds once rounded to a float, not as written.
        raise field_error(
            "mean_var",
            "mean from -1000000 to 1000000, var above 0 (at most 300 zeros after the point) "
            f"up to 1000000, as written (got {text[:40]!r})",
        )
    return mean, var


def format_number(value: float) -> str:
    """A number as it appears in a path: plain decimal, no exponent, no trailing zeros."""
    return np.format_float_positional(value, trim="-")


def single_values(args: MultiDict, repeatable: Iterable[str] = ()) -> dict[str, str]:
    """Query or form arguments as a plain dict; a key given twice is ambiguous, so it is an
    error (except the ``repeatable`` ones, which are left out). Values are length-limited."""
    out: dict[str, str] = {}
    errors = []
    repeatable = frozenset(repeatable)
    too_long = f"longer than {MAX_TEXT_VALUE} characters"
    for key in args:
        values = args.getlist(key)
        if key in repeatable:
            if any(len(v) > MAX_TEXT_VALUE for v in values):
                errors.append(FieldError(shown(key), too_long))
        elif len(values) > 1:
            errors.append(FieldError(shown(key), "given more than once"))
        elif len(values[0]) > MAX_TEXT_VALUE:
            errors.append(FieldError(shown(key), too_long))
        else:
            out[key] = values[0]
    if errors:
        raise invalid(errors)
    return out


def no_query() -> None:
    """A 400 naming every argument, for a route that takes no query string."""
    errors = unknown_keys(request.args.keys(), ())
    if errors:
        raise invalid(errors)


def spec_or_404(registry: Registry, name: str) -> FigureSpec:
    spec = registry.get(name)
    if spec is None:
        names = ", ".join(s.name for s in registry)
        raise Problem(
            404, "Unknown figure", f"There is no figure {name[:40]!r}; try one of: {names}."
        )
    return spec
