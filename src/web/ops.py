"""Operator endpoints: liveness and readiness. They never wait behind renders."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import hide

from .state import app_state

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
@hide
async def healthz() -> Response:
    # The process answers: that is all liveness means.
    return Response("ok\n", mimetype="text/plain", headers={"Cache-Control": "no-store"})


@bp.get("/readyz")
@hide
async def readyz() -> Response:
    renderer = app_state().renderer
    ready = renderer is not None and renderer.ready
    return Response(
        "ready\n" if ready else "starting or stopping\n",
        status=200 if ready else 503,
        mimetype="text/plain",
        headers={"Cache-Control": "no-store"},
    )
