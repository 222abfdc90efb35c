"""Schemathesis hooks of the contract test (``SCHEMATHESIS_HOOKS``).

A job's work limit is a sum over its items (each item's output pixels), which a JSON Schema
cannot state; the document says it in words. Generated jobs are kept within it, so a 400 for
a job the document allows stays a failure.
"""

from __future__ import annotations

from typing import Any

import schemathesis

from figserve.config import Settings
from figserve.figures import FIGURES
from figserve.figures.scatter import least_window
from figserve.render import ImageOptions, canvas_for

SETTINGS = Settings.from_env()  # the server under test runs with the same environment


def _pixels(item: Any) -> int:
    spec = FIGURES.get(item.get("figure")) if isinstance(item, dict) else None
    if spec is None:
        return 0
    size = {k: item.get(k) for k in ("w", "h", "dpr", "dpi") if item.get(k) is not None}
    try:
        opts = ImageOptions.model_validate({"w": spec.width, "h": spec.height, **size})
    except ValueError:
        return 0  # refused for its size anyway
    return canvas_for(opts, SETTINGS.max_pixels).pixels


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    operation = context.operation
    if operation is None or (operation.method.upper(), operation.path) != ("POST", "/jobs"):
        return True
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return True
    if not all(_window_allowed(item) for item in body["items"]):
        return False
    pixels = sum(_pixels(item) for item in body["items"])
    budget = SETTINGS.job_max_pixels
    if body.get("output", "pdf") == "pdf":
        budget = min(budget, SETTINGS.job_max_pdf_pixels)
    return pixels <= budget


def _window_allowed(query: Any) -> bool:
    """A scatter's window is lo and hi together, hi above lo by a least width: one rule over
    two parameters, which the document says in words."""
    if not isinstance(query, dict) or ("lo" not in query and "hi" not in query):
        return True
    lo, hi = (None if query.get(k) in (None, "") else query[k] for k in ("lo", "hi"))
    if lo is None or hi is None:
        return lo is None and hi is None  # an empty value stands for none
    try:
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        return True  # refused for its type, which the document states
    return hi - lo >= least_window(lo, hi)


@schemathesis.hook
def filter_case(context: Any, case: Any) -> bool:
    # filter_case also runs in the coverage phase, whose made-up values reach the edges.
    return _window_allowed(case.query)
