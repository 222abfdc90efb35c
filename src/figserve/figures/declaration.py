"""What a figure declares, checked once when it is registered, so that a start fails with a
clear message instead of every visitor getting an error later.

A declaration is the figure's name, texts, parameter model, default size, alt text template and
functions (``draw``, ``update``, ``version``). The alt text template is checked by formatting it
with the model's defaults and with edge values of every parameter (its bounds, None, the empty
and the longest text, every member of a choice), one parameter at a time and all at their
lowest and highest together: a template that fails for any of them (``{label:>5}`` with
``label=None``) stops the start. ``alt_text`` itself never raises at request time either.
"""

from __future__ import annotations

import datetime as dt
import inspect
import re
import string
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from .registry import FigureSpec

# Parameter names: a letter first (so no name ever clashes with a reserved query key such as
# ``_v``), then letters, digits and underscores.
PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}", re.ASCII)
TITLE_MAX = 200
DESCRIPTION_MAX = 2000
# A figure's default size: the bounds of the image options' w and h (a test keeps them equal).
SIZE_MIN, SIZE_MAX = 50, 3000
ALT_MAX = 500  # characters of alt text; longer text is cut at request time
SPEC_NUMBER_MAX = 200  # width or precision in an alt text's format spec
LONG_TEXT = 1000  # the longest text tried for a text parameter without a maximum length
_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>[0-9]*)[_,]?(?:\.(?P<prec>[0-9]+))?")


class FigureDeclarationError(ValueError):
    """A figure whose declaration cannot serve; the message names the figure and the fault."""


def check_declaration(spec: FigureSpec, reserved: frozenset[str], base: type[BaseModel]) -> None:
    """Raise ``FigureDeclarationError`` if ``spec`` declares something that cannot work;
    ``base`` is the class every parameter model derives from (the registry's)."""
    name = spec.name

    def fail(message: str) -> FigureDeclarationError:
        return FigureDeclarationError(f"figure {name!r}: {message}")

    for label, text, most in (
        ("title", spec.title, TITLE_MAX),
        ("description", spec.description, DESCRIPTION_MAX),
    ):
        if not isinstance(text, str) or not text.strip():
            raise fail(f"{label}= must be a non-empty text")
        if len(text) > most:
            raise fail(f"{label}= has {len(text)} characters; at most {most}")
    if not (isinstance(spec.params, type) and issubclass(spec.params, base)):
        raise fail("params= must be a FigureParams (or SeededParams) subclass")
    _check_names(spec, reserved, fail)
    defaults = _defaults(spec, fail)
    _check_size(spec, fail)
    _check_functions(spec, fail)
    _check_alt(spec, defaults, fail)


def _check_names(spec: FigureSpec, reserved: frozenset[str], fail: Callable) -> None:
    for field_name, info in spec.params.model_fields.items():
        keys = {field_name}
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                keys.add(alias)
            elif alias is not None:
                raise fail(f"parameter {field_name!r} has an alias other than one plain name")
        for key in sorted(keys):
            if not PARAM_NAME.fullmatch(key):
                raise fail(
                    f"parameter name {key!r} must start with a letter and hold only letters, "
                    "digits and underscores (at most 64)"
                )
        clash = keys & reserved
        if clash:
            raise fail(f"uses reserved parameter names {sorted(clash)}")


def _defaults(spec: FigureSpec, fail: Callable) -> BaseModel:
    """The model's defaults, checked like any request's values."""
    model = spec.params
    required = [n for n, info in model.model_fields.items() if info.is_required()]
    if required:
        raise fail(f"every parameter needs a default; {', '.join(required)} has none")
    try:
        defaults = model()
        # Pydantic does not check defaults: run them through the model's own checks.
        model.model_validate(defaults.model_dump())
        defaults.model_dump(mode="json")
        model.model_json_schema()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'model'}: {e['msg']}" for e in exc.errors()
        )
        raise fail(f"its default parameters are not valid ({problems})") from None
    except Exception as exc:
        raise fail(
            f"its parameter model cannot describe itself ({type(exc).__name__}: {exc})"
        ) from None
    return defaults


def _check_size(spec: FigureSpec, fail: Callable) -> None:
    for label, value in (("width", spec.width), ("height", spec.height)):
        if type(value) is not int or not SIZE_MIN <= value <= SIZE_MAX:
            raise fail(
                f"{label}={value!r} must be a whole number of CSS pixels from {SIZE_MIN} to "
                f"{SIZE_MAX}"
            )


def _check_functions(spec: FigureSpec, fail: Callable) -> None:
    for role, fn, args in (
        ("draw", spec.draw, ("fig", "params")),
        ("update", spec.update, ("fig", "handles", "params")),
        ("version", spec.version, ("params",)),
    ):
        if fn is None and role != "draw":
            continue
        if not callable(fn):
            raise fail(f"{role}= must be a function")
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):
            continue  # a builtin or extension function: nothing to check
        try:
            signature.bind(*args)
        except TypeError:
            takes = ", ".join(signature.parameters)
            raise fail(
                f"its {role} function {getattr(fn, '__name__', fn)!r}({takes}) must take "
                f"{len(args)} positional argument{'s' if len(args) > 1 else ''} "
                f"({', '.join(args)})"
            ) from None
        if inspect.iscoroutinefunction(fn):
            raise fail(f"its {role} function must be a plain function, not async")


def _check_alt(spec: FigureSpec, defaults: BaseModel, fail: Callable) -> None:
    template = spec.alt
    if not isinstance(template, str) or not template.strip():
        raise fail("alt= must be a non-empty text")
    fields = set(spec.params.model_fields)
    used: list[str] = []
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise fail(f"alt text {template!r} is not a valid template: {exc}") from None
    for _, field, spec_text, _ in parts:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if root == "" or root.isdigit():
            raise fail(f"alt text {template!r}: name each placeholder ({{field}}), as in {{n}}")
        if root not in fields:
            raise fail(
                f"alt text {template!r} names {root!r}, which is not one of its parameters "
                f"({', '.join(sorted(fields)) or 'none'})"
            )
        if root not in used:
            used.append(root)
        if spec_text and "{" in spec_text:
            raise fail(f"alt text {template!r}: a format spec may not hold a placeholder")
        match = _SPEC.match(spec_text or "")
        numbers = [match.group("width"), match.group("prec")] if match else []
        if any(n and int(n) > SPEC_NUMBER_MAX for n in numbers):
            raise fail(f"alt text {template!r}: widths and precisions of at most {SPEC_NUMBER_MAX}")
    for values in _edge_cases(spec.params, defaults):
        try:
            params = spec.params.model_validate(values)
        except ValidationError:
            continue  # not an allowed combination (a rule across parameters)
        try:
            template.format(**params.model_dump())
        except Exception as exc:
            # The values the template uses, those changed from the defaults first.
            changed = [k for k in used if values[k] != getattr(defaults, k)]
            shown = changed + [k for k in used if k not in changed]
            given = ", ".join(f"{k}={_short(values[k])}" for k in shown)
            raise fail(
                f"alt text {template!r} fails for {given}: {type(exc).__name__}: {exc}"
            ) from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:30]}...({len(value)} characters)'"


def _edge_cases(model: type[BaseModel], defaults: BaseModel) -> Iterator[dict[str, Any]]:
    """Parameter values to try: the defaults, each parameter at each of its edge values, and
    every parameter at its first (then its last) edge value together."""
    base = defaults.model_dump()
    yield dict(base)
    properties = model.model_json_schema().get("properties", {})
    edges = {name: _edges(properties.get(name, {}), base[name]) for name in base}
    for name, values in edges.items():
        for value in values:
            yield {**base, name: value}
    for pick in (0, -1):
        yield {**base, **{name: values[pick] for name, values in edges.items() if values}}


def _edges(schema: dict[str, Any], default: Any) -> list[Any]:
    out: list[Any] = []
    for kind in schema.get("anyOf", [schema]):
        if kind.get("type") == "null":
            out.append(None)
        elif "enum" in kind:
            out += list(kind["enum"])
        elif "const" in kind:
            out.append(kind["const"])
        elif kind.get("type") == "boolean":
            out += [False, True]
        elif kind.get("type") in {"integer", "number"}:
            out += _number_edges(kind, integer=kind.get("type") == "integer")
        elif kind.get("type") == "string" and kind.get("format") == "date":
            out += [dt.date(1, 1, 1), dt.date(9999, 12, 31)]
        elif kind.get("type") == "string":
            low = int(kind.get("minLength", 0))
            high = int(kind.get("maxLength", LONG_TEXT))
            out += ["", "W" * low, "W" * high, "{x} %s"]
        elif "anyOf" in kind:
            out += _edges(kind, default)
    return [v for v in out if v != default or type(v) is not type(default)]


def _number_edges(schema: dict[str, Any], *, integer: bool) -> list[Any]:
    unbounded = 10**9 if integer else 1e300
    low = schema.get("minimum", schema.get("exclusiveMinimum", -unbounded))
    high = schema.get("maximum", schema.get("exclusiveMaximum", unbounded))
    step = 1 if integer else 1e-9 * max(1.0, abs(low), abs(high))
    if "exclusiveMinimum" in schema:
        low += step
    if "exclusiveMaximum" in schema:
        high -= step
    values = [low, high, 0, -1, 1, 0.5, -0.5, 1e-9]
    if integer:
        values = [int(v) for v in values if float(v).is_integer()]
    return [v for v in values if low <= v <= high]
