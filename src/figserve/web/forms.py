"""HTML forms as renders: the gallery's report form as a job plan, and an upload's fields.

Both read the form within the body limits (``body.py``) and go through the one validation of
``figserve/validation.py``; every wrong field is named at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from quart import request
from werkzeug.datastructures import FileStorage

from ..config import Settings
from ..figures import Registry
from ..figures.data import PlotParams
from ..jobs import OUTPUTS, JobPlan, check_cost, reject
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

REPORT_OPTIONS = ("output", "format", "w", "h")
PLOT_SIZE = (640, 400)


async def report_from_form(registry: Registry, settings: Settings) -> JobPlan:
    """The gallery's report form: figures ticked, copies of each, their parameters, size and
    output.

    The number of items is known from the ticked figures and their copies before anything is
    expanded, and refused over the limit before any per-item work; each figure's parameters are
    validated once, and its copies differ only in their seeds.
    """
    form, files = await read_form()
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
    options, option_errors = _report_options(values, output)
    errors += option_errors

    # What the report holds: each figure once, and a count of copies of each. With any doubt
    # about it, or over the limit, nothing further is done.
    ticked = form.getlist("figure")
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
            values.get(param, ""), param, default=1, largest=settings.job_max_items
        )
        shape += count_errors
    total = sum(copies.values())
    if total > settings.job_max_items:
        message = f"at most {settings.job_max_items} figures per report (got {total})"
        shape.append(FieldError("copies", message))
    if shape:
        reject(errors + shape)  # before any figure is validated or copied

    items: list[RenderRequest] = []
    for name in names:
        spec = registry.get(name)
        assert spec is not None
        own = {k[len(name) + 1 :]: v for k, v in values.items() if k.startswith(f"{name}.")}
        try:
            params, opts = parse_flat(
                spec.params,
                own,
                default_size=(spec.width, spec.height),
                fixed=options,
                prefix=f"{name}.",
            )
            first = RenderRequest.of(spec, params, opts, settings.max_pixels, f"{name}.")
        except Invalid as exc:
            errors += [e for e in exc.errors if e not in errors]
            continue
        seed = getattr(params, "seed", None)
        if seed is None or copies[name] == 1:
            items += [first] * copies[name]
            continue
        # Copies of a seeded random figure take the next seeds: reproducible, not equal.
        last = seed + copies[name] - 1
        try:
            spec.params.model_validate({**params.model_dump(), "seed": last})
        except ValidationError:
            message = f"{copies[name]} copies take the seeds {seed} to {last}, too large"
            errors.append(FieldError(f"{name}.seed", message))
            continue
        for copy in range(copies[name]):
            seeded = params.model_copy(update={"seed": seed + copy})
            items.append(RenderRequest.of(spec, seeded, opts, settings.max_pixels))
    if not errors:
        errors = check_cost(sum(i.pixels for i in items), output, settings, "copies")
    if errors:
        reject(errors)
    return JobPlan(output, items)


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
