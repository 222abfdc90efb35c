"""What a job asks for, checked before anything is queued: one plan builder, fed by two thin
parsers (a JSON body here, the gallery's report form in ``figserve/web/forms.py``).

A parser turns its input into ``ReportPart``s (how to read one render, how many copies of it);
``build_plan`` bounds the number of items before any of them is read, reads each part once,
expands copies (a seeded figure's copies take the next seeds), and checks the job's estimated
work against the budgets. Every error of every part is listed at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config import Settings
from ..figures import Registry
from ..validation import (
    FieldError,
    Invalid,
    RenderRequest,
    RenderSpec,
    from_spec,
    pydantic_errors,
)
from .model import OUTPUTS
from .pdf import PAPER_CHOICES

PAPERS = PAPER_CHOICES
MAX_LISTED_ERRORS = 50
_ITEM = re.compile(r"items\.([0-9]+)")
Paper = Literal["a4", "letter", "figure"]


class JobRequest(BaseModel):
    """A batch of figures rendered in the background into one file."""

    model_config = ConfigDict(extra="forbid")

    items: list[RenderSpec] = Field(
        min_length=1,
        description="The figures, in order: one PDF page or one ZIP entry each. For a PDF, "
        "leave format out (or give pdf).",
    )
    output: Literal["pdf", "zip"] = Field(
        "pdf", description="One multi-page PDF, or a ZIP of one image per item."
    )
    paper: Paper = Field(
        "a4",
        description="A PDF's pages: a4 or letter (each figure scaled to fit under a caption "
        "of its title and parameters), or figure (each page the figure's own size, without "
        "a caption). A ZIP has no pages.",
    )


@dataclass(frozen=True)
class JobPlan:
    """A job that passed every check: what to queue."""

    output: str
    items: list[RenderRequest]
    paper: str | None = None  # a PDF's paper

    def stored(self) -> list[dict[str, Any]]:
        return [item.stored() for item in self.items]


@dataclass(frozen=True)
class ReportPart:
    """One entry of a report, as a parser found it."""

    read: Callable[[], RenderRequest]  # validates the render; raises ``Invalid``
    copies: int = 1
    seed_param: str = "seed"  # how errors name the seed of its copies


@dataclass
class _Errors:
    items: list[FieldError] = field(default_factory=list)

    def add(self, errors: Sequence[FieldError]) -> None:
        self.items += [e for e in errors if e not in self.items]


def reject(errors: Sequence[FieldError]) -> NoReturn:
    """Raise ``Invalid`` with the errors (at most ``MAX_LISTED_ERRORS`` of them listed)."""
    errors = list(errors)
    if len(errors) > MAX_LISTED_ERRORS:
        more = len(errors) - MAX_LISTED_ERRORS
        errors = [*errors[:MAX_LISTED_ERRORS], FieldError("items", f"and {more} more errors")]
    raise Invalid(errors, "Invalid job")


def check_cost(pixels: int, output: str, settings: Settings, param: str) -> list[FieldError]:
    """The job's estimated work, all its output pixels, against the budgets."""
    if pixels > settings.job_max_pixels:
        message = (
            f"a report draws at most {settings.job_max_pixels:,} pixels in all "
            f"(these figures have {pixels:,}); use fewer or smaller figures"
        )
        return [FieldError(param, message)]
    if output == "pdf" and pixels > settings.job_max_pdf_pixels:
        message = (
            f"a PDF report holds at most {settings.job_max_pdf_pixels:,} pixels in all "
            f"(these figures have {pixels:,}); use fewer or smaller figures, or a ZIP"
        )
        return [FieldError(param, message)]
    return []


def build_plan(
    output: str,
    parts: Sequence[ReportPart],
    settings: Settings,
    *,
    paper: str | None = None,
    count_param: str = "items",
    errors: Sequence[FieldError] = (),
) -> JobPlan:
    """The plan of ``parts`` for ``output``, or ``Invalid`` listing ``errors`` (the parser's
    own) and every error of every part."""
    found = _Errors(list(errors))
    total = sum(part.copies for part in parts)
    if total > settings.job_max_items:
        # Before any part is read: the work of checking is bounded too.
        message = f"at most {settings.job_max_items} figures per report (got {total})"
        reject([*found.items, FieldError(count_param, message)])
    items: list[RenderRequest] = []
    for part in parts:
        try:
            first = part.read()
        except Invalid as exc:
            found.add(exc.errors)
            continue
        items += _copies(first, part, settings, found)
    if not found.items:
        found.add(check_cost(sum(i.pixels for i in items), output, settings, count_param))
    if found.items:
        reject(sorted(found.items, key=_order))
    return JobPlan(output, items, paper if output == "pdf" else None)


def _copies(
    first: RenderRequest, part: ReportPart, settings: Settings, found: _Errors
) -> list[RenderRequest]:
    """``part``'s copies: the same render, or for a seeded figure the next seeds in turn
    (reproducible, not equal)."""
    seed = getattr(first.params, "seed", None)
    if seed is None or part.copies == 1:
        return [first] * part.copies
    last = seed + part.copies - 1
    spec = first.spec
    try:
        spec.params.model_validate({**first.params.model_dump(), "seed": last})
    except ValidationError:
        message = f"{part.copies} copies take the seeds {seed} to {last}, too large"
        found.add([FieldError(part.seed_param, message)])
        return []
    out = []
    for copy in range(part.copies):
        seeded = first.params.model_copy(update={"seed": seed + copy})
        out.append(RenderRequest.of(spec, seeded, first.options, settings.max_pixels))
    return out


def _item_index(error: FieldError) -> int:
    match = _ITEM.match(error.param)
    return int(match.group(1)) if match else -1


def _order(error: FieldError) -> tuple[int, int]:
    """Errors of the job as a whole first, then its items' in their order."""
    if not error.param.startswith("items"):
        return (0, 0)
    return (1, _item_index(error))


def plan_from_json(registry: Registry, body: dict[str, Any], settings: Settings) -> JobPlan:
    """A ``JobRequest`` body as a plan; ``Invalid`` listing every error, item by item."""
    raw_items = body.get("items")
    raw_items = raw_items if isinstance(raw_items, list) else []
    if len(raw_items) > settings.job_max_items:
        # Before any item is looked at, even as the shape of a request.
        build_plan("pdf", [ReportPart(_never)] * len(raw_items), settings)
    errors: list[FieldError] = []
    try:
        request = JobRequest.model_validate(body, strict=True)
        output, paper = request.output, request.paper
    except ValidationError as exc:
        # The job as a whole here; each item is checked below, as a render of its own.
        errors = [e for e in pydantic_errors(exc) if _item_index(e) < 0]
        given = body.get("output")
        output = given if isinstance(given, str) and given in OUTPUTS else "zip"
        paper = None  # a bad output: items are still checked, as for a ZIP
    parts = []
    for index, raw in enumerate(raw_items):
        prefix = f"items.{index}."
        if output == "pdf" and isinstance(raw, dict) and raw.get("format", "pdf") != "pdf":
            message = "a PDF report draws every item as a page; leave format out"
            errors.append(FieldError(prefix + "format", message))
            continue
        parts.append(ReportPart(_json_item(registry, raw, settings, prefix, output)))
    return build_plan(output, parts, settings, paper=paper, errors=errors)


def _never() -> RenderRequest:
    raise AssertionError("a report over the item limit is refused before any item is read")


def _json_item(
    registry: Registry, raw: Any, settings: Settings, prefix: str, output: str
) -> Callable[[], RenderRequest]:
    defaults = {"format": "pdf"} if output == "pdf" else None
    return lambda: from_spec(registry, raw, settings.max_pixels, prefix=prefix, defaults=defaults)
