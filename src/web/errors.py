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
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from pydantic import ValidationError
from quart import Quart, Response, render_template, request
from werkzeug.exceptions import HTTPException

from ..render import (
    LimitExceeded,
    Overloaded,
    RenderCrashed,
    RenderFailed,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)

log = logging.getLogger("figserve.web")

PROBLEM_JSON = "application/problem+json"
_SIZE = re.compile(r"[0-9]{1,4}", re.ASCII)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


@dataclass
class Problem(Exception):
    status: int
    title: str
    detail: str = ""
    # One entry per wrong parameter: {"param": name, "message": why}.
    errors: list[dict[str, str]] = field(default_factory=list)
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
            body["param"] = self.errors[0]["param"]
            body["errors"] = self.errors
        return body


def invalid(errors: list[dict[str, str]], title: str = "Invalid parameters") -> Problem:
    detail = "; ".join(f"{e['param']}: {e['message']}" for e in errors)
    return Problem(400, title, detail, errors)


def validation_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Pydantic errors as ``{"param", "message"}`` pairs a person can act on."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(part) for part in err["loc"]) or "body"
        message = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] not in {"extra_forbidden", "missing"} and "input" in err:
            message += f" (got {_short(err['input'])})"
        out.append({"param": prefix + loc, "message": message})
    return out


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def _prefers_image() -> bool:
    best = request.accept_mimetypes.best_match(
        [PROBLEM_JSON, "application/json", "image/svg+xml", "image/png", "image/webp"]
    )
    return best is not None and best.startswith("image/")


def _prefers_html() -> bool:
    best = request.accept_mimetypes.best_match([PROBLEM_JSON, "application/json", "text/html"])
    return best == "text/html"


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
    style = getattr(request, "blueprint", None)
    if style == "pages" or (style not in {"images", "api", "jobs"} and _prefers_html()):
        html = await render_template("error.html", problem=problem)
        resp = Response(html, status=problem.status, mimetype="text/html")
    elif style == "images" and _prefers_image():
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


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(Problem)
    async def _problem(exc: Problem) -> Response:
        return await problem_response(exc)

    @app.errorhandler(LimitExceeded)
    async def _limit(exc: LimitExceeded) -> Response:
        return await problem_response(invalid([{"param": exc.param, "message": str(exc)}]))

    @app.errorhandler(Overloaded)
    async def _overloaded(exc: Overloaded) -> Response:
        return await problem_response(
            Problem(
                503,
                "Too many renders",
                f"The server is busy ({exc}); try again shortly.",
                headers={"Retry-After": str(exc.retry_after)},
            )
        )

    @app.errorhandler(RenderTimeout)
    async def _timeout(exc: RenderTimeout) -> Response:
        return await problem_response(
            Problem(
                503,
                "Render timed out",
                f"{exc}; try again shortly or ask for a smaller figure.",
                headers={"Retry-After": str(exc.retry_after)},
            )
        )

    @app.errorhandler(RenderUnavailable)
    async def _unavailable(exc: RenderUnavailable) -> Response:
        return await problem_response(
            Problem(
                503,
                "Not ready",
                f"No render process can take this render now ({exc}); try again shortly.",
                headers={"Retry-After": str(exc.retry_after)},
            )
        )

    @app.errorhandler(RenderCrashed)
    async def _crashed(exc: RenderCrashed) -> Response:
        return await problem_response(
            Problem(
                503,
                "Render process failed",
                f"{exc}; it has been replaced, try again.",
                headers={"Retry-After": str(exc.retry_after)},
            )
        )

    @app.errorhandler(TooComplex)
    async def _too_complex(exc: TooComplex) -> Response:
        return await problem_response(
            Problem(
                422,
                "Figure too complex",
                f"{exc}; ask for less data, fewer labels or a smaller image.",
            )
        )

    @app.errorhandler(RenderFailed)
    async def _failed(exc: RenderFailed) -> Response:
        # A bug in a figure function; the renderer logged its traceback.
        return await problem_response(
            Problem(500, "Internal Server Error", "The figure failed to draw; this was logged.")
        )

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
            return await problem_response(invalid([{"param": "body", "message": message}]))
        return await _unexpected(exc)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        # A bug: log it with its traceback for the operator, tell the client nothing more.
        log.exception("error status=500 method=%s path=%s", request.method, request.path)
        return await problem_response(
            Problem(500, "Internal Server Error", "The server failed; this has been logged."),
            logged=True,
        )
