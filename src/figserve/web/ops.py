"""Operator endpoints: liveness, readiness and metrics. They never wait behind renders."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from ..metrics import CONTENT_TYPE
from .asgi import HEALTH_BODY
from .errors import Problem
from .state import app_state

bp = Blueprint("ops", __name__)
NO_STORE = {"Cache-Control": "no-store"}


@bp.get("/healthz")
@hide
async def healthz() -> Response:
    # The process answers: that is all liveness means. (Served before routing by ``asgi.guard``;
    # the route stays for url_for and for 405 on other methods.)
    return Response(HEALTH_BODY, mimetype="text/plain", headers=NO_STORE)


@bp.get("/readyz")
@hide
async def readyz() -> Response:
    # Ready once the render pool runs and matplotlib is warmed up (fonts, one tiny figure), and
    # the job store answers (no I/O here: the job service keeps its store's state).
    state = app_state()
    problems = []
    if state.renderer is None or not state.renderer.ready:
        problems.append("renderer: starting or stopping")
    if state.jobs is None:
        problems.append("jobs: starting or stopping")
    elif not state.jobs.ready:
        problems.append(f"jobs: {state.jobs.problem}")
    ready = not problems
    return Response(
        "ready\n" if ready else "".join(f"{p}\n" for p in problems),
        status=200 if ready else 503,
        mimetype="text/plain",
        headers=NO_STORE if ready else {**NO_STORE, "Retry-After": "1"},
    )


@bp.get("/metrics")
@hide
async def metrics() -> Response:
    """Prometheus text format, summed over all worker processes of this server."""
    metrics = app_state().metrics
    if metrics is None:
        raise Problem(503, "Not ready", "Metrics are not running.", headers={"Retry-After": "1"})
    return Response(metrics.exposition(), content_type=CONTENT_TYPE, headers=NO_STORE)
