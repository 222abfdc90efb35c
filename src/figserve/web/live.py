"""``GET /live/stream``: the Server-Sent Events stream of a live page.

The query names the images a viewer shows, each as the path of its image URL (``f=``, repeated,
at most ``FIGSERVE_LIVE_MAX_FIGURES``), e.g. ``f=/figures/sales.png?region=north&w=600&h=300``.
Each is validated as the image route would (an invalid one is reported in the stream and left
out; none valid is a 400), and the stream then carries

    event: figure
    id: <epoch>.<seq>
    data: {"figures": [{"key": "<pair>", "pin": "<pin>", "stale": false}, ...]}

for every version change of those figures, once the new image is in the cache. ``key`` is the
``data-live`` attribute of the page's images and ``pin`` the new value of their URLs' ``_v``
parameter; ``static/live.js`` preloads the new image and swaps it. On connect it sends the
current pins (or, given a ``Last-Event-ID`` of this server's, header or ``last=`` parameter,
only what changed since), so a client that reconnects misses nothing. Comments keep idle
streams open; ``event: bye`` says the server is stopping (reconnect soon, elsewhere).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from quart import Blueprint, Response, request
from quart_schema import hide

from ..figures import Registry
from ..live.streams import Notice, Refused, Stream, StreamHub, Viewed
from ..render import MEDIA_TYPES
from ..validation import MAX_TEXT_VALUE, FieldError, Invalid, RenderRequest, parse_flat
from .clients import request_client
from .errors import Problem, invalid
from .state import app_state

if TYPE_CHECKING:
    pass

log = logging.getLogger("figserve.live")
bp = Blueprint("live", __name__)

PIN = "_v"  # the reserved parameter of version-pinned image URLs
MAX_TARGET = 1000  # characters of one image URL in the query
MAX_TARGET_FIELDS = 64
_TARGET = re.compile(r"/figures/([a-z][a-z0-9_]{0,31})\.([a-z]{1,8})", re.ASCII)
# A client reconnects this long after a dropped stream (EventSource's own retry; live.js backs
# off further by itself).
RETRY_MS = 2000
HEARTBEAT = b":\n\n"
BYE = b"event: bye\ndata: {}\n\n"
# Statuses of refusals, and how long to wait before trying again.
_REFUSED = {"busy": (503, 10), "client": (429, 30), "stopping": (503, 2)}


def _event(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=(",", ":"))
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


@functools.lru_cache(maxsize=256)
def _figures(notices: tuple[Notice, ...], event_id: str) -> bytes:
    """A ``figure`` message; made once for all the streams told the same thing at once."""
    return _event("figure", {"figures": [n.as_dict() for n in notices]}, event_id)


def viewed_image(text: str, param: str, registry: Registry, max_pixels: int) -> Viewed:
    """One image a viewer shows, from the path of its URL, checked as the image route checks
    it; ``Invalid`` (naming ``param``) otherwise."""

    def wrong(message: str) -> Invalid:
        return Invalid([FieldError(param, message)])

    if len(text) > MAX_TARGET:
        raise wrong(f"an image URL of at most {MAX_TARGET} characters")
    parts = urlsplit(text)
    if parts.scheme or parts.netloc or parts.fragment:
        raise wrong("the path of an image URL of this site, e.g. /figures/name.png?w=400")
    match = _TARGET.fullmatch(parts.path)
    if match is None:
        raise wrong("an image URL /figures/<name>.<format>?<parameters>")
    spec = registry.get(match.group(1))
    if spec is None:
        raise wrong(f"no figure {match.group(1)!r}")
    fmt = match.group(2)
    if fmt not in MEDIA_TYPES:
        raise wrong(f"no format {fmt!r}; one of {', '.join(MEDIA_TYPES)}")
    try:
        fields = parse_qsl(parts.query, keep_blank_values=True, max_num_fields=MAX_TARGET_FIELDS)
    except ValueError:
        raise wrong(f"at most {MAX_TARGET_FIELDS} parameters") from None
    values: dict[str, str] = {}
    for key, value in fields:
        if key in values or len(value) > MAX_TEXT_VALUE:
            raise wrong(f"{key[:40]!r} given twice or longer than {MAX_TEXT_VALUE} characters")
        values[key] = value
    values.pop(PIN, None)
    try:
        params, opts = parse_flat(
            spec.params, values, default_size=(spec.width, spec.height), fixed={"format": fmt}
        )
        RenderRequest.of(spec, params, opts, max_pixels)
    except Invalid as exc:
        raise wrong("; ".join(f"{e.param}: {e.message}" for e in exc.errors)[:300]) from None
    if not spec.deterministic(params):
        raise wrong(f"{spec.name} without a seed draws a new sample each time: it has no versions")
    return Viewed.of(spec, params, opts)


def _viewed(
    targets: list[str], most: int, registry: Registry, max_pixels: int
) -> tuple[list[Viewed], list[FieldError]]:
    if not targets:
        raise invalid([FieldError("f", "give the images to follow: f=/figures/<name>.<fmt>?...")])
    if len(targets) > most:
        raise invalid([FieldError("f", f"at most {most} images per stream (got {len(targets)})")])
    out: dict[tuple[str, str], Viewed] = {}
    errors: list[FieldError] = []
    for i, text in enumerate(targets):
        try:
            v = viewed_image(text, f"f[{i}]", registry, max_pixels)
        except Invalid as exc:
            errors += exc.errors
        else:
            out.setdefault((v.key, v.target), v)
    if not out:
        raise invalid(errors)
    return list(out.values()), errors


@bp.get("/live/stream")
@hide
async def stream() -> Response:
    state = app_state()
    hub = state.streams
    if hub is None:
        raise Problem(
            503, "Not ready", "Live streams are not running.", headers={"Retry-After": "1"}
        )
    settings = state.settings
    if set(request.args) - {"f", "last"}:
        unknown = sorted(set(request.args) - {"f", "last"})
        raise invalid([FieldError(k[:40], "unknown parameter") for k in unknown])
    targets = request.args.getlist("f")
    viewed, errors = _viewed(
        targets, settings.live_max_figures, state.registry, settings.max_pixels
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # what a GET would answer, without holding a stream open
        return Response(b"", mimetype="text/event-stream", headers=headers)
    last = request.headers.get("Last-Event-ID") or request.args.get("last")
    client = request_client(settings)
    try:
        live, notices = await hub.open(client, viewed, last)
    except Refused as exc:
        status, retry = _REFUSED[exc.reason]
        raise Problem(status, "Too many live streams" if status == 429 else "Busy", str(exc),
                      headers={"Retry-After": str(retry)}) from None  # fmt: skip
    task = asyncio.current_task()
    live.task = task
    if task is not None:
        # Whatever ends this request (the client left before the body began, a stop), the
        # stream is released; the body's own ``finally`` usually does it first.
        task.add_done_callback(lambda _: hub.release(live))
    first = f"retry: {RETRY_MS}\n\n".encode()
    if errors:
        first += _event("invalid", {"errors": [e.as_dict() for e in errors]})
    if notices:
        first += _figures(tuple(notices), hub.message_id())
    response = Response(
        _events(hub, live, first, settings.live_heartbeat),
        mimetype="text/event-stream",
        headers=headers,
    )
    response.timeout = None  # a stream lasts as long as its viewer looks
    return response


async def _events(
    hub: StreamHub, live: Stream, first: bytes, heartbeat: float
) -> AsyncIterator[bytes]:
    try:
        hub.sending(live, True)
        yield first
        hub.sending(live, False)
        while True:
            notices = await live.next(heartbeat)
            if notices is None:
                if live.reason == "stop":
                    hub.sending(live, True)
                    yield BYE
                return
            hub.sending(live, True)
            yield _figures(tuple(notices), hub.message_id()) if notices else HEARTBEAT
            hub.sending(live, False)
    finally:
        hub.release(live)
