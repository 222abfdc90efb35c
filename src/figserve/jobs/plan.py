"""What a job asks for, checked before anything is queued: its output and items, each a valid
render, within the job limits (item count, estimated work)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
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

OUTPUTS = {"pdf": "application/pdf", "zip": "application/zip"}
MAX_LISTED_ERRORS = 50
_ITEM = re.compile(r"items\.([0-9]+)")


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


@dataclass(frozen=True)
class JobPlan:
    """A job that passed every check: what to queue."""

    output: str
    items: list[RenderRequest]

    def stored(self) -> list[dict[str, Any]]:
        return [item.stored() for item in self.items]


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
    if isinstance(raw_items, list) and len(raw_items) > settings.job_max_items:
        # Before any item is looked at: the work of checking is bounded too.
        message = f"at most {settings.job_max_items} items per job (got {len(raw_items)})"
        reject([FieldError("items", message)])
    errors: list[FieldError] = []
    output = "pdf"
    try:
        output = JobRequest.model_validate(body, strict=True).output
    except ValidationError as exc:
        # The job as a whole here; each item is checked below, as a render of its own.
        errors = [e for e in pydantic_errors(exc) if _item_index(e) < 0]
        if isinstance(body.get("output"), str) and body["output"] in OUTPUTS:
            output = body["output"]
        else:
            output = "zip"  # a bad output: items are still checked, as for a ZIP
    items: list[RenderRequest] = []
    for index, raw in enumerate(raw_items if isinstance(raw_items, list) else []):
        prefix = f"items.{index}."
        if output == "pdf" and isinstance(raw, dict) and raw.get("format", "pdf") != "pdf":
            message = "a PDF report draws every item as a page; leave format out"
            errors.append(FieldError(prefix + "format", message))
            continue
        defaults = {"format": "pdf"} if output == "pdf" else None
        try:
            items.append(
                from_spec(registry, raw, settings.max_pixels, prefix=prefix, defaults=defaults)
            )
        except Invalid as exc:
            errors += exc.errors
    if not errors:
        errors = check_cost(sum(i.pixels for i in items), output, settings, "items")
    if errors:
        reject(sorted(errors, key=_order))
    return JobPlan(output, items)
