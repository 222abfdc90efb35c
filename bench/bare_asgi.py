"""The wire-speed reference: an ASGI app of a few lines that answers every request with one
stored response (the bytes and headers figserve sends for a cached image), served by Hypercorn
with the same configuration. ``BARE_RESPONSE`` names a JSON file: {"headers": [[name, value],
...], "body_file": path}."""

from __future__ import annotations

import json
import os

with open(os.environ["BARE_RESPONSE"]) as _f:
    _SPEC = json.load(_f)
with open(_SPEC["body_file"], "rb") as _f:
    BODY = _f.read()
HEADERS = [(name.encode(), value.encode()) for name, value in _SPEC["headers"]]


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return  # Hypercorn carries on without lifespan events
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
