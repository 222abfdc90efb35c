"""The least an ASGI app can do, served by the same Hypercorn: ``tests.support.bare:app``.

Idle beside a server under test, its answer time is what the machine and the client add to
any answer (scheduling, loopback), which no server can do without."""

from __future__ import annotations

from typing import Any

BODY = b"ok\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
