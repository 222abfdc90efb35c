"""Error responses: one ``Problem`` shown three ways.

Pages get an HTML page, API clients get ``application/problem+json`` (RFC 9457), and image routes
answer a client that prefers images (a browser ``<img>``) with a small SVG that shows the
message, so a broken figure explains itself on the page. No stack trace ever reaches a client.
"""

from __future__ import annotations

import json
import logging
import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from xml.sax.saxutils import escape

from quart import Quart, Response, render_template, request
from werkzeug.exceptions import HTTPException

from ..render import (
    LimitExceeded,
    Overloaded,
    RenderCrashed,
    RenderError,
    RenderFailed,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from ..validation import FieldError, Invalid

log = logging.getLogger("figserve.web")

PROBLEM_JSON = "application/problem+json"
_SIZE = re.compile(r"[0-9]{1,4}", re.ASCII)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass
class Problem(Exception):
    status: int
    title: str
    detail: str = ""
    errors: list[FieldError] = field(default_factory=list)  # one per wrong parameter
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.detail}"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors:
            body["param"] = self.errors[0].param
            body["errors"] = [e.as_dict() for e in self.errors]
        return body


def invalid(errors: Iterable[FieldError], title: str = "Invalid parameters") -> Problem:
    errors = list(errors)
    detail = "; ".join(f"{e.param}: {e.message}" for e in errors)
    return Problem(400, title, detail, errors)


def field_error(param: str, message: str, title: str = "Invalid parameters") -> Problem:
    """A 400 for one wrong parameter."""
    return invalid([FieldError(param, message)], title)


def error_svg(message: str, status: int, width: int = 400, height: int = 300) -> bytes:
    """A self-explaining placeholder image: the status and the message, wrapped to fit."""
    chars = max(20, width // 8)
    lines = textwrap.wrap(message, chars)[: max(1, (height - 60) // 18)]
    tspans = "".join(f'<tspan x="16" dy="18">{escape(line)}</tspan>' for line in lines)
    label = escape(message, {'"': "&quot;"})
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}">'
        f'<rect x="1" y="1" width="{width - 2}" height="{height - 2}" fill="#fff5f5" '
        f'stroke="#c0392b" stroke-width="2"/>'
        f'<text x="16" y="32" font-family="sans-serif" font-size="16" font-weight="bold" '
        f'fill="#c0392b">Figure error {status}</text>'
        f'<text x="16" y="44" font-family="sans-serif" font-size="13" fill="#333">{tspans}</text>'
        "</svg>"
    )
    return svg.encode()


def _best(*candidates: str) -> str | None:
    return request.accept_mimetypes.best_match([PROBLEM_JSON, "application/json", *candidates])


def wants_html() -> bool:
    """Whether the client prefers a page to JSON (a browser navigating)."""
    return _best("text/html") == "text/html"


def _kind() -> Literal["html", "svg", "json"]:
    """How this request's errors are shown: pages as pages, images to an ``<img>`` as an image,
    the API as problem+json, and the rest (jobs) as whatever the client prefers."""
    area = getattr(request, "blueprint", None)
    if area == "pages":
        return "html"
    if area == "images":
        best = _best("image/svg+xml", "image/png", "image/webp")
        return "svg" if best is not None and best.startswith("image/") else "json"
    if area != "api" and wants_html():
        return "html"
    return "json"


def _image_box() -> tuple[int, int]:
    # Draw the error at the size the page reserved for the figure, when it is sane (plain
    # ASCII digits: int() would also read other scripts' digits, spaces and underscores).
    w, h = request.args.get("w", "400"), request.args.get("h", "300")
    if not (_SIZE.fullmatch(w) and _SIZE.fullmatch(h)):
        return 400, 300
    width, height = int(w), int(h)
    return (width, height) if 50 <= width <= 3000 and 50 <= height <= 3000 else (400, 300)


def log_problem(problem: Problem) -> None:
    """One line per error response; the level says whose problem it is (client, load, bug)."""
    if problem.status >= 500:
        level = logging.WARNING if problem.status in {502, 503, 504} else logging.ERROR
    else:
        level = logging.INFO
    if log.isEnabledFor(level):
        log.log(
            level,
            "error status=%d title=%r method=%s path=%s detail=%r",
            problem.status,
            problem.title,
            request.method,
            request.path,
            problem.detail[:200],
        )


async def problem_response(problem: Problem, *, logged: bool = False) -> Response:
    if not logged:
        log_problem(problem)
    kind = _kind()
    if kind == "html":
        html = await render_template("error.html", problem=problem)
        resp = Response(html, status=problem.status, mimetype="text/html")
    elif kind == "svg":
        w, h = _image_box()
        resp = Response(
            error_svg(problem.detail or problem.title, problem.status, w, h),
            status=problem.status,
            mimetype="image/svg+xml",
        )
        resp.headers["Content-Security-Policy"] = SVG_CSP
    else:
        resp = Response(json.dumps(problem.body()), status=problem.status, mimetype=PROBLEM_JSON)
    # Errors describe this request only: never let a cache keep them.
    resp.headers["Cache-Control"] = "no-store"
    for name, value in problem.headers.items():
        resp.headers[name] = value
    return resp


# How each render outcome that is not an image is answered: status, title, detail.
_RENDER_PROBLEMS: dict[type[RenderError], tuple[int, str, str]] = {
    Overloaded: (503, "Too many renders", "The server is busy ({}); try again shortly."),
    RenderTimeout: (503, "Render timed out", "{}; try again shortly or ask for a smaller figure."),
    RenderUnavailable: (
        503,
        "Not ready",
        "No render process can take this render now ({}); try again shortly.",
    ),
    RenderCrashed: (503, "Render process failed", "{}; it has been replaced, try again."),
    TooComplex: (
        422,
        "Figure too complex",
        "{}; ask for less data, fewer labels or a smaller image.",
    ),
    # A bug in a figure function; the renderer logged its traceback.
    RenderFailed: (500, "Internal Server Error", "The figure failed to draw; this was logged."),
}


def render_problem(exc: RenderError) -> Problem:
    # The nearest kind listed (a subclass answers as its base), a bug (500) if none is.
    kind = next((k for k in type(exc).__mro__ if k in _RENDER_PROBLEMS), RenderFailed)
    status, title, detail = _RENDER_PROBLEMS[kind]  # type: ignore[index]
    retry = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry)} if retry is not None else {}
    return Problem(status, title, detail.format(exc), headers=headers)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(Problem)
    async def _problem(exc: Problem) -> Response:
        return await problem_response(exc)

    @app.errorhandler(Invalid)
    async def _invalid(exc: Invalid) -> Response:
        return await problem_response(invalid(exc.errors, exc.title))

    @app.errorhandler(LimitExceeded)
    async def _limit(exc: LimitExceeded) -> Response:
        return await problem_response(field_error(exc.param, str(exc)))

    @app.errorhandler(RenderError)
    async def _render_error(exc: RenderError) -> Response:
        return await problem_response(render_problem(exc))

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        detail = exc.description or ""
        if exc.code == 404:
            detail = f"Nothing is served at {request.path}. The index at / lists what is."
        elif exc.code == 405:
            detail = f"{request.method} is not allowed on {request.path}."
        problem = Problem(exc.code or 500, exc.name, detail)
        resp = await problem_response(problem)
        if exc.code == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(UnicodeDecodeError)
    async def _undecodable_body(exc: UnicodeDecodeError) -> Response:
        # Reading a request body as text (JSON, form) fails in the framework on bytes that are
        # not UTF-8: the client sent them, so it is their error. Anywhere else it is a bug.
        if request.method in {"POST", "PUT", "PATCH"} and exc.object == await request.get_data():
            message = f"not valid UTF-8 text (byte {exc.start})"
            return await problem_response(field_error("body", message))
        return await _unexpected(exc)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        # A bug: log it with its traceback for the operator, tell the client nothing more.
        log.exception("error status=500 method=%s path=%s", request.method, request.path)
        return await problem_response(
            Problem(500, "Internal Server Error", "The server failed; this has been logged."),
            logged=True,
        )
