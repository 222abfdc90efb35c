"""The outermost ASGI layer: what must hold before Quart sees a connection, or after it gave up.

- ``GET /healthz`` is answered here, before routing, hooks and metrics: under a flood the event
  loop is busy with requests, and the fewer loop steps a liveness probe takes, the sooner it
  answers (liveness responses are therefore not counted in the request metrics).
- figserve has no WebSocket endpoint. Quart would route an upgrade request and fail in its error
  handlers (they need an HTTP request); here every WebSocket handshake is refused at once with a
  403, and nothing is logged but the server's access log line.
- A request body must arrive in full within ``body_timeout`` seconds of the request's start.
  The server applies no such deadline of its own, so a client sending a byte now and then could
  hold a connection (and a task) for ever; past the deadline the request answers 408 and its
  connection closes.
- A request body may have at most ``max_body_bytes``: a ``Content-Length`` above it answers 413
  before the app runs, and every byte that arrives is counted (with or without a length, however
  it is cut into pieces), so a body that passes the limit answers 413 there and stops being
  read. Quart never sees a byte past the limit.
- A request the server cuts short (its graceful stop time ran out) answers 503, instead of the
  500 Hypercorn sends for a request the app never answered.
- Past liveness, every HTTP request goes through the gate (``gate.py``): a few start at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from html import escape
from typing import Any

from .gate import GATE_LEASE, GATE_SLOTS, Gate

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_JSON = b"application/problem+json"
HTML_PROBLEM = (
    '<!doctype html><html lang="en"><meta charset="utf-8"><title>{title}</title>'
    '<h1>{title}</h1><p>{detail}</p><p><a href="/">Back to the gallery</a></p></html>'
)
HEALTH_BODY = b"ok\n"
_HEALTH_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class _BodyTimeout(Exception):
    """The request body did not arrive before its deadline."""


class _BodyTooLarge(Exception):
    """More of the request body arrived than the limit allows."""


def _problem(
    status: int, title: str, detail: str, scope: Scope | None = None
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """A problem+json answer, or a small page for a browser that navigated (a form post)."""
    if scope is not None and _wants_html(scope):
        body = HTML_PROBLEM.format(title=escape(title), detail=escape(detail)).encode()
        kind = b"text/html; charset=utf-8"
    else:
        body = json.dumps(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        ).encode()
        kind = PROBLEM_JSON
    headers = [
        (b"content-type", kind),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    if kind != PROBLEM_JSON:
        headers.append((b"content-security-policy", b"default-src 'none'"))
    return headers, body


def _wants_html(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"accept":
            return b"text/html" in value and b"json" not in value
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 20 else None
    return None


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit:,} bytes."


async def _refuse_websocket(scope: Scope, send: Send) -> None:
    # Answered at once: the handshake ends here, whatever the client sends next.
    detail = "figserve has no WebSocket endpoints; use plain HTTP."
    if "websocket.http.response" in (scope.get("extensions") or {}):
        # The server lets the app answer the handshake with an HTTP response: say why.
        headers, body = _problem(403, "WebSocket refused", detail)
        await send({"type": "websocket.http.response.start", "status": 403, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def guard(
    app: ASGIApp,
    *,
    body_timeout: float,
    max_body_bytes: int,
    gate_slots: int = GATE_SLOTS,
    gate_lease: float = GATE_LEASE,
) -> ASGIApp:
    """Wrap ``app``: liveness first, the gate (``gate.py``), WebSocket handshakes refused, HTTP
    bodies read within a size limit and against a deadline, and a request cut short by a stop
    answered."""
    gates: dict[asyncio.AbstractEventLoop, Gate] = {}  # one per event loop (tests run several)

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await _refuse_websocket(scope, send)
            return
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        if scope["path"] == "/healthz" and scope["method"] in {"GET", "HEAD"}:
            body = HEALTH_BODY if scope["method"] == "GET" else b""
            await _answer(send, 200, _HEALTH_HEADERS, body)
            return
        declared = _content_length(scope)
        if declared is not None and declared > max_body_bytes:
            await _refuse(send, scope, 413, "Request Entity Too Large", _too_large(max_body_bytes))
            return
        loop = asyncio.get_running_loop()
        gate = gates.get(loop)
        if gate is None:
            gate = gates[loop] = Gate(gate_slots, gate_lease)
        try:
            release = await gate.enter()
        except asyncio.CancelledError:
            await _stopping(send)  # the stop's grace time ran out while it waited its turn
            raise
        if release is None:
            headers, body = _problem(503, "Busy", "Too many requests wait; try again shortly.")
            headers.append((b"retry-after", b"1"))
            await _answer(send, 503, headers, body)
            return
        try:
            await _guarded_http(app, scope, receive, send, body_timeout, max_body_bytes)
        finally:
            release()

    return guarded


async def _guarded_http(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, timeout: float, limit: int
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    body_done = False
    received = 0
    started = False

    async def counted_receive() -> Message:
        nonlocal body_done, received
        if body_done:
            return await receive()  # only a disconnect can come now: no deadline
        try:
            async with asyncio.timeout_at(deadline):
                message = await receive()
        except TimeoutError:
            raise _BodyTimeout from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise _BodyTooLarge  # nothing of it reaches the app
        if message["type"] != "http.request" or not message.get("more_body", False):
            body_done = True
        return message

    async def tracked_send(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
        await send(message)

    try:
        await app(scope, counted_receive, tracked_send)
    except _BodyTimeout:
        # The app's request task was cancelled; answer for it if it had not begun to.
        if not started:
            detail = f"The request body did not arrive within {timeout:g} seconds."
            await _refuse(send, scope, 408, "Request Timeout", detail)
    except _BodyTooLarge:
        if not started:
            await _refuse(send, scope, 413, "Request Entity Too Large", _too_large(limit))
    except asyncio.CancelledError:
        # The server stopped waiting for this request (its stop's grace time ran out).
        if not started:
            await _stopping(send)
        raise


async def _stopping(send: Send) -> None:
    headers, body = _problem(503, "Stopping", "The server is stopping.")
    headers.append((b"retry-after", b"1"))
    with contextlib.suppress(Exception):
        await _answer(send, 503, headers, body)


async def _refuse(send: Send, scope: Scope, status: int, title: str, detail: str) -> None:
    """Answer without reading the rest of the body: the connection closes after it."""
    headers, body = _problem(status, title, detail, scope)
    headers.append((b"connection", b"close"))
    await _answer(send, status, headers, body)
