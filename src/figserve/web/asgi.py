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
- A request the server cuts short (its graceful stop time ran out) answers 503, instead of the
  500 Hypercorn sends for a request the app never answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM_JSON = b"application/problem+json"
# Requests that start at once per worker, how long one keeps its place, and how many may wait
# for one (more are answered 503 at once: a flood of HTTP/2 streams cannot pile up).
GATE_SLOTS = 2
GATE_LEASE = 0.02
GATE_QUEUE = 1024
HEALTH_BODY = b"ok\n"
_HEALTH_HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(HEALTH_BODY)).encode()),
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
]


class _BodyTimeout(Exception):
    """The request body did not arrive before its deadline."""


def _problem(status: int, title: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail}
    ).encode()
    headers = [
        (b"content-type", PROBLEM_JSON),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"),
    ]
    return headers, body


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


async def _stopping(send: Send) -> None:
    headers, body = _problem(503, "Stopping", "The server is stopping.")
    headers.append((b"retry-after", b"1"))
    with contextlib.suppress(Exception):
        await _answer(send, 503, headers, body)


class Gate:
    """At most ``slots`` requests start at once; the others wait their turn, costing nothing.

    An event loop runs every ready step of every request in turn, so under a flood each step of
    a health check waits behind one step of every other request in progress: its latency grows
    with the number of clients. Behind the gate only ``slots`` requests make progress at once
    (the rest are parked), so what a health check waits for stays bounded however many clients
    there are. A request keeps its slot until it ends or for ``lease`` seconds, whichever is
    first: one that waits on something else (a render, a page thread, a stream) gives its slot
    back without having to say so.
    """

    def __init__(self, slots: int, lease: float, queue: int = GATE_QUEUE) -> None:
        self.slots = slots
        self.lease = lease
        self.queue = queue
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)

    async def enter(self) -> Callable[[], None] | None:
        """Wait for a slot; the function that gives it back (at most once, also by itself),
        or None at once when ``queue`` requests wait already."""
        if self._semaphore.locked():
            if self.waiting >= self.queue:
                return None
            self.waiting += 1
            try:
                await self._semaphore.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._semaphore.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                timer.cancel()
                self._semaphore.release()

        timer = asyncio.get_running_loop().call_later(self.lease, release)
        return release


_RELEASE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "figserve_gate_release", default=None
)


def step_aside() -> None:
    """Give this request's place at the gate back now: it is about to wait on something else
    (a render, a page thread), and others may start meanwhile."""
    release = _RELEASE.get()
    if release is not None:
        release()


def guard(
    app: ASGIApp,
    *,
    body_timeout: float,
    gate_slots: int = GATE_SLOTS,
    gate_lease: float = GATE_LEASE,
) -> ASGIApp:
    """Wrap ``app``: liveness first, the gate, WebSocket handshakes refused, HTTP bodies read
    against a deadline, and a request cut short by a stop answered."""
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
        _RELEASE.set(release)  # this request's own context (its task's)
        try:
            await _guarded_http(scope, receive, send)
        finally:
            release()

    async def _guarded_http(scope: Scope, receive: Receive, send: Send) -> None:
        deadline = asyncio.get_running_loop().time() + body_timeout
        body_done = False
        started = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()  # only a disconnect can come now: no deadline
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await app(scope, timed_receive, tracked_send)
        except _BodyTimeout:
            # The app's request task was cancelled; answer for it if it had not begun to.
            if not started:
                detail = f"The request body did not arrive within {body_timeout:g} seconds."
                headers, body = _problem(408, "Request Timeout", detail)
                headers.append((b"connection", b"close"))
                await _answer(send, 408, headers, body)
        except asyncio.CancelledError:
            # The server stopped waiting for this request (its stop's grace time ran out).
            if not started:
                await _stopping(send)
            raise

    return guarded
