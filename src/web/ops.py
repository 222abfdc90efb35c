"""Operator endpoints: liveness, readiness and metrics. They never wait behind renders."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from quart import Blueprint, Response
from quart_schema import hide

from ..metrics import CONTENT_TYPE
from .errors import Problem
from .state import app_state

bp = Blueprint("ops", __name__)
NO_STORE = {"Cache-Control": "no-store"}


HEALTH_BODY = b"ok\n"
_HEALTH_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


@bp.get("/healthz")
@hide
async def healthz() -> Response:
    # The process answers: that is all liveness means. (Served by ``health_first`` below; the
    # route stays for url_for and for 405 on other methods.)
    return Response(HEALTH_BODY, mimetype="text/plain", headers=NO_STORE)


def health_first(asgi_app: Any) -> Any:
    """Answer ``GET /healthz`` before the app's routing, hooks and metrics.

    Under a flood the event loop is busy with request handling; the fewer loop steps a liveness
    probe takes, the sooner it answers (about half the latency of a routed request). Liveness
    responses are therefore not counted in the request metrics.
    """

    async def app(scope: dict, receive: Any, send: Any) -> None:
        probe = scope["type"] == "http" and scope["path"] == "/healthz"
        if probe and scope["method"] in {"GET", "HEAD"}:
            await send({"type": "http.response.start", "status": 200, "headers": _HEALTH_HEADERS})
            body = HEALTH_BODY if scope["method"] == "GET" else b""
            await send({"type": "http.response.body", "body": body})
            return
        await asgi_app(scope, receive, send)

    return app


_STOPPING_BODY = b'{"title": "Stopping", "status": 503, "detail": "The server is stopping."}'
_STOPPING_HEADERS = [
    (b"content-type", b"application/problem+json"),
    (b"content-length", str(len(_STOPPING_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"retry-after", b"1"),
]


def answer_when_cut(asgi_app: Any) -> Any:
    """Answer 503 to a request the server cuts short (its graceful stop time ran out) instead
    of the 500 Hypercorn sends for a request the app never answered."""

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await asgi_app(scope, receive, send)
            return
        started = False

        async def tracked(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asgi_app(scope, receive, tracked)
        except asyncio.CancelledError:
            if not started:
                with contextlib.suppress(Exception):
                    start = {"type": "http.response.start", "status": 503}
                    await send({**start, "headers": _STOPPING_HEADERS})
                    await send({"type": "http.response.body", "body": _STOPPING_BODY})
            raise

    return app


@bp.get("/readyz")
@hide
async def readyz() -> Response:
    # Ready once the render pool runs and matplotlib is warmed up (fonts, one tiny figure).
    renderer = app_state().renderer
    ready = renderer is not None and renderer.ready
    return Response(
        "ready\n" if ready else "starting or stopping\n",
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
