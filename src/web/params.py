"""From request data to validated figure parameters and image options (or a 400 Problem)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError
from werkzeug.datastructures import MultiDict

from ..figures import FigureParams, FigureSpec
from ..render import ImageOptions
from .errors import Problem, invalid, validation_errors

OPTION_NAMES = frozenset(ImageOptions.model_fields)
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_MEAN_VAR = re.compile(rf"^({_NUMBER})_({_NUMBER})$")
MAX_QUERY_VALUE = 200  # characters; no parameter needs more


def parse_mean_var(text: str) -> tuple[float, float]:
    """``"5_3"`` or ``"-2.5_0.5"`` as two floats; anything else is a 400 naming the format."""
    match = _MEAN_VAR.match(text)
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


def single_values(args: MultiDict) -> dict[str, str]:
    """Query arguments as a plain dict; a key given twice is ambiguous, so it is an error."""
    out: dict[str, str] = {}
    errors = []
    for key in args:
        values = args.getlist(key)
        if len(values) > 1:
            errors.append({"param": key, "message": "given more than once"})
        elif len(values[0]) > MAX_QUERY_VALUE:
            errors.append({"param": key, "message": f"longer than {MAX_QUERY_VALUE} characters"})
        else:
            out[key] = values[0]
    if errors:
        raise invalid(errors)
    return out


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
    values = _blank_to_default(values)
    errors: list[dict[str, str]] = []
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
