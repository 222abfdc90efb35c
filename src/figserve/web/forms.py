"""HTML forms as renders: the gallery's report form as job parts, and an upload's fields.

Both read the form within the body limits (``body.py``) and go through the one validation of
``figserve/validation.py``; every wrong field is named at once. The report form is a thin
parser: the plan (bounds, copies, seeds, cost) is built by ``figserve/jobs/plan.py``, as for a
JSON body. ``report_form`` describes the form itself, filled in with defaults or with what a
person sent, and the errors of each field.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ValidationError
from quart import request
from werkzeug.datastructures import FileStorage, MultiDict

from ..config import Settings
from ..figures import Registry
from ..figures.data import PlotParams
from ..jobs import OUTPUTS, PAPERS, JobPlan, ReportPart, build_plan, reject
from ..render import MEDIA_TYPES, ImageOptions
from ..validation import (
    FieldError,
    Invalid,
    RenderRequest,
    number_errors,
    parse_count,
    parse_flat,
    pydantic_errors,
    unknown_keys,
)
from .body import read_form, unsupported_media_type
from .errors import Problem, invalid
from .params import single_values

REPORT_OPTIONS = ("output", "format", "w", "h", "paper")
PLOT_SIZE = (640, 400)
DEFAULT_COPIES = 1
DEFAULT_PAPER = "a4"


async def report_from_form(registry: Registry, settings: Settings) -> JobPlan:
    """The gallery's report form as a plan (``Invalid`` naming every wrong field)."""
    form, files = await read_form()
    return report_plan(registry, settings, form, files)


def report_plan(
    registry: Registry, settings: Settings, form: MultiDict, files: MultiDict
) -> JobPlan:
    """Figures ticked, copies of each, their parameters, the size, format, output and paper.

    The number of items is known from the ticked figures and their copies before anything is
    read, and refused over the limit before any per-figure work; each figure's parameters are
    validated once, and its copies differ only in their seeds.
    """
    known = {*REPORT_OPTIONS, "figure"}
    for spec in registry:
        known.add(f"copies.{spec.name}")
        known.update(f"{spec.name}.{name}" for name in spec.params.model_fields)
    errors = unknown_keys([*form.keys(), *files.keys()], known)
    try:
        values = single_values(form, repeatable=("figure",))
    except Problem as problem:
        reject(errors + problem.errors)
    output = values.get("output") or "pdf"
    if output not in OUTPUTS:
        errors.append(FieldError("output", "one of pdf, zip"))
    paper = values.get("paper") or DEFAULT_PAPER
    if paper not in PAPERS:
        errors.append(FieldError("paper", f"one of {', '.join(PAPERS)}"))
    options, option_errors = _report_options(values, output)
    errors += option_errors
    names, copies, shape = _ticked(registry, form.getlist("figure"), values, settings)
    if shape:
        reject(errors + shape)  # before any figure is read or copied
    parts = [
        ReportPart(_reader(registry, name, values, options, settings), copies[name], f"{name}.seed")
        for name in names
    ]
    return build_plan(output, parts, settings, paper=paper, count_param="copies", errors=errors)


def _ticked(
    registry: Registry, ticked: list[str], values: dict[str, str], settings: Settings
) -> tuple[list[str], dict[str, int], list[FieldError]]:
    """The figures ticked (each once), their copies, and what is wrong with either."""
    names: list[str] = []
    shape: list[FieldError] = []
    for name in ticked:
        if name not in registry:
            shape.append(FieldError("figure", f"no figure {name[:40]!r}"))
        elif name in names:
            shape.append(FieldError("figure", f"{name} is ticked more than once"))
        else:
            names.append(name)
    if not ticked:
        shape.append(FieldError("figure", "tick at least one figure"))
    copies: dict[str, int] = {}
    for name in names:
        param = f"copies.{name}"
        copies[name], count_errors = parse_count(
            values.get(param, ""), param, default=DEFAULT_COPIES, largest=settings.job_max_items
        )
        shape += count_errors
    return names, copies, shape


def _reader(
    registry: Registry,
    name: str,
    values: dict[str, str],
    options: dict[str, Any],
    settings: Settings,
) -> Any:
    def read() -> RenderRequest:
        spec = registry.get(name)
        assert spec is not None
        own = {k[len(name) + 1 :]: v for k, v in values.items() if k.startswith(f"{name}.")}
        params, opts = parse_flat(
            spec.params,
            own,
            default_size=(spec.width, spec.height),
            fixed=options,
            prefix=f"{name}.",
        )
        return RenderRequest.of(spec, params, opts, settings.max_pixels, f"{name}.")

    return read


def _report_options(values: dict[str, str], output: str) -> tuple[dict[str, Any], list[FieldError]]:
    """The size and format every figure of a report shares, and what is wrong with them."""
    given = {k: values[k] for k in ("w", "h") if values.get(k)}
    errors = number_errors(given, (ImageOptions,))
    if errors:
        given = {}
    given["format"] = (values.get("format") or "png") if output == "zip" else "pdf"
    try:
        ImageOptions.model_validate({"w": 400, "h": 300, **given})
    except ValidationError as exc:
        errors += pydantic_errors(exc)
        fmt = given["format"]
        return ({"format": fmt} if fmt in MEDIA_TYPES else {}), errors
    return given, errors


def report_form(
    registry: Registry,
    settings: Settings,
    sent: MultiDict | None = None,
    errors: list[FieldError] | None = None,
) -> dict[str, Any]:
    """The report form as the gallery shows it: with the defaults a person would pick (every
    figure once, as an A4 PDF), or with what they sent and each field's error."""
    values = {k: sent.get(k, "") for k in sent} if sent is not None else {}
    ticked = set(sent.getlist("figure")) if sent is not None else {s.name for s in registry}
    by_param = {}
    for error in errors or []:
        by_param.setdefault(error.param, error.message)
    figures = []
    for spec in registry:
        prefix = f"{spec.name}."
        own = {k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
        own_errors = {k[len(prefix) :]: v for k, v in by_param.items() if k.startswith(prefix)}
        fields = form_fields(spec.params, own, own_errors)
        figures.append(
            {
                "spec": spec,
                "ticked": spec.name in ticked,
                "copies": values.get(f"copies.{spec.name}", str(DEFAULT_COPIES)),
                "copies_error": by_param.get(f"copies.{spec.name}"),
                "fields": [dict(f, name=prefix + f["name"]) for f in fields],
                "open": bool(own_errors),
            }
        )
    shown = {"figure", "copies", *REPORT_OPTIONS}
    prefixes = ("copies.", *(f"{s.name}." for s in registry))
    shown |= {k for k in by_param if k.startswith(prefixes)}
    return {
        "figures": figures,
        "output": values.get("output") or "pdf",
        "paper": values.get("paper") or DEFAULT_PAPER,
        "format": values.get("format") or "png",
        "w": values.get("w", ""),
        "h": values.get("h", ""),
        "errors": by_param,
        "other_errors": {k: v for k, v in by_param.items() if k not in shown},
        "max_items": settings.job_max_items,
        "formats": list(MEDIA_TYPES),
        "papers": PAPERS,
    }


@functools.cache
def _properties(model: type[BaseModel]) -> dict[str, Any]:
    # A model's schema is fixed, and generating it is most of what a form costs.
    return model.model_json_schema()["properties"]


def form_fields(
    model: type[BaseModel],
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    skip: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """Describe each field of ``model`` as an HTML form control, from its JSON schema."""
    errors = errors or {}
    out = []
    for name, prop in _properties(model).items():
        if name in skip:
            continue
        optional = "anyOf" in prop
        base = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
        if "enum" in base:
            kind = "select"
        elif base.get("format") == "date":
            kind = "date"
        elif base.get("type") in {"integer", "number"}:
            kind = "number"
        else:
            kind = "text"
        default = prop.get("default")
        out.append(
            {
                "name": name,
                "kind": kind,
                "label": name,
                "description": prop.get("description", ""),
                "options": base.get("enum", []),
                "min": base.get("minimum", base.get("exclusiveMinimum")),
                "max": base.get("maximum", base.get("exclusiveMaximum")),
                "step": 1 if base.get("type") == "integer" else "any",
                "maxlength": base.get("maxLength"),
                "value": values.get(name, "" if default is None else default),
                "optional": optional,
                "error": errors.get(name),
            }
        )
    return out


async def plot_from_form(max_body_bytes: int) -> tuple[PlotParams, ImageOptions, bytes, str]:
    """An upload: its plot parameters and image options, and the file's bytes and name."""
    if request.mimetype != "multipart/form-data":
        raise unsupported_media_type("multipart/form-data")
    form, files = await read_form()
    fields = {*PlotParams.model_fields, *ImageOptions.model_fields}
    # Unknown fields are errors whatever their value; each field and the file come once.
    errors = unknown_keys([*form.keys(), *files.keys()], {*fields, "file"})
    errors += [FieldError(k, "a form field, not a file") for k in files if k in fields]
    if len(files.getlist("file")) > 1:
        errors.append(FieldError("file", "attach one file"))
    upload: FileStorage | None = files.get("file")
    if upload is None:
        errors.append(FieldError("file", "attach the data as a file field 'file'"))
    values = single_values(form)
    try:
        params, opts = parse_flat(PlotParams, values, default_size=PLOT_SIZE)
    except Invalid as exc:
        errors += exc.errors
    if errors:
        raise invalid(errors)
    assert upload is not None and isinstance(params, PlotParams)
    data = upload.read(max_body_bytes + 1)
    if len(data) > max_body_bytes:  # the body limit makes this impossible; be sure
        raise Problem(413, "Request Entity Too Large", "The upload is too large.")
    return params, opts, data, upload.filename or ""
