"""``POST /api/figures/<name>/changed``: the operator says "this data changed now".

For data that changes rarely but must show at once: the figure's version function is asked
again now, for every pair of the figure this server keeps (or those whose parameters include
``params``), instead of within ``refresh`` seconds; in scale-out mode on every instance. Pages
and live viewers get the new images as for any change. Needs ``FIGSERVE_ADMIN_TOKEN``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from quart import Blueprint, request
from quart_schema import document_request, tag

from ..figures import FigureSpec
from ..validation import pydantic_errors, unknown_keys
from .body import json_object
from .errors import Problem, invalid
from .openapi import BODY_ERRORS, json_responses, problem, responds
from .owner import require_admin
from .params import no_query, spec_or_404
from .state import app_state, versions

bp = Blueprint("changes", __name__, url_prefix="/api")


class DataChanged(BaseModel):
    """Which of the figure's images to check again (all of them without ``params``)."""

    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] | None = Field(
        None,
        description="Only the figure's images whose parameters include these values.",
    )


class ChangeChecked(BaseModel):
    figure: str
    params: dict[str, Any] | None
    changed: int = Field(description="Images of the figure whose data version changed here.")


@bp.post("/figures/<name>/changed")
@tag(["api"])
@document_request(DataChanged)
@responds(
    json_responses({"schema": ChangeChecked.model_json_schema()}, 400)
    | BODY_ERRORS
    | {
        "401": problem("No or a wrong admin token (Authorization: Bearer <token>)."),
        "403": problem("No admin token is configured, or a cross-site request."),
        "404": problem("No such figure."),
        "409": problem("The figure has no version function: its data cannot change."),
    }
)
async def changed(name: str) -> dict[str, Any]:
    """Check a live figure's data version again now (operator only)."""
    no_query()
    state = app_state()
    require_admin(state.settings)
    spec = spec_or_404(state.registry, name)
    body = await json_object() if await request.get_data() else {}
    try:
        given = DataChanged.model_validate(body).params
    except ValidationError as exc:
        raise invalid(pydantic_errors(exc)) from None
    if spec.version is None:
        raise Problem(
            409,
            "Not a live figure",
            f"Figure {name!r} declares no version function (version=): its images depend on "
            "its code and parameters only.",
        )
    params = _narrowing(spec, given) if given else None
    count = await versions().changed(spec.name, params)
    return ChangeChecked(figure=spec.name, params=params, changed=count).model_dump()


def _narrowing(spec: FigureSpec, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` checked against the figure's parameters, as their JSON values."""
    errors = unknown_keys(given, spec.params.model_fields, "params.")
    known = {k: v for k, v in given.items() if k in spec.params.model_fields}
    try:
        values = spec.params.model_validate(known).model_dump(mode="json")
    except ValidationError as exc:
        errors += [e for e in pydantic_errors(exc, "params.") if e.param[7:] in known]
        values = {}
    if errors:
        raise invalid(errors)
    return {k: values[k] for k in known}
