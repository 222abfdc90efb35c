"""Cached images at wire speed: hits of the image cache, and their 304s, answered below Quart.

Answering a cached image through Quart (routing, hooks, a ``Response``, the after-request
chain) costs several times what the server itself needs to send the bytes. The image views know
when an answer is the render cache's bytes of a key, so they ``offer`` their request target to
this layer; once such a 200 has gone out (and its body was exactly the cache's bytes), the exact
target (raw path and query string) is kept in a bounded table with the headers the slow path sent.
A later ``GET`` of that target is answered here: the same headers (``X-Render-Cache: hit``, as
the slow path says for a hit), the cache's bytes, or a 304 with what the slow path's 304 carries
when its ``If-None-Match`` names the image. The request metrics and the cache-hit metric are
counted as the slow path counts them; Hypercorn writes the access log line as for any request.
figserve's own render log line is not written for these hits.

Anything unusual goes the slow path: another method, a body, ranges and other preconditions,
several ``If-None-Match`` headers or one this layer does not read, responses whose coding
depends on ``Accept-Encoding`` (they ``Vary``; SVG), entries whose bytes left the render cache,
whose ``fresh_until`` (a ``time.monotonic()`` value: when the figure's data version must be
checked again) has passed, or whose figure was forgotten since (``Renderer.forget``), and every
request while the server starts or stops.
"""

from __future__ import annotations

import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from quart import request

from .asgi import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from ..metrics import Metrics
    from ..render import Renderer
    from .state import AppState

SCOPE_KEY = "figserve.fastpath"
MAX_TARGET = 2048  # bytes of path and query of a target the table keeps
# Request headers whose presence sends a request the slow path (they change or condition the
# answer, or announce a body).
_SLOW = frozenset(
    {
        b"content-length",
        b"transfer-encoding",
        b"expect",
        b"range",
        b"if-range",
        b"if-match",
        b"if-unmodified-since",
        b"if-modified-since",
    }
)
# Response headers that make a 200 unfit for the table: its bytes or headers depend on more
# than the target.
_UNFIT = frozenset({b"vary", b"content-encoding", b"set-cookie"})
KEEP_ON_304 = frozenset(
    {b"etag", b"cache-control", b"vary", b"expires", b"date", b"content-location"}
)
_ETAGS = re.compile(rb'\s*(?:\*|(?:W/)?"[^"]*"(?:\s*,\s*(?:W/)?"[^"]*")*)\s*')
_TAG = re.compile(rb'"([^"]*)"')
_CODING_SUFFIXES = (b"-br", b"-gzip")


@dataclass(frozen=True)
class Offer:
    """What an image view says about the 200 it is about to send."""

    key: str
    figure: str
    format: str
    fresh_until: float
    route: str


def offer(*, key: str, figure: str, fmt: str, fresh_until: float = math.inf) -> None:
    """Let the fast path answer this request's exact target from now on. Call it from an image
    view that answers 200 with the render cache's bytes of ``key``; ``fresh_until`` is when the
    figure's data version must be checked again (``math.inf``: it has none)."""
    rule = request.url_rule
    route = rule.rule if rule is not None else "unmatched"
    request.scope[SCOPE_KEY] = Offer(key, figure, fmt, fresh_until, route)


class _Entry:
    __slots__ = (
        "fresh_until",
        "generation",
        "headers",
        "headers_304",
        "hits",
        "key",
        "metrics",
        "not_modified",
        "offer",
        "ok",
        "renderer",
        "tag",
    )

    def __init__(
        self,
        offer: Offer,
        renderer: Renderer,
        metrics: Metrics,
        headers: list[tuple[bytes, bytes]],
        tag: bytes,
    ) -> None:
        self.offer = offer
        self.key = offer.key
        self.fresh_until = offer.fresh_until
        self.renderer = renderer
        self.generation = renderer.generation(offer.figure)
        self.metrics = metrics
        self.headers = headers
        self.headers_304 = [(n, v) for n, v in headers if n in KEEP_ON_304]
        self.tag = tag
        # Bound once: a labelled child costs a lookup and a lock per request otherwise.
        self.ok = metrics.requests.labels(offer.route, "GET", "200")
        self.not_modified = metrics.requests.labels(offer.route, "GET", "304")
        self.hits = metrics.counters["cache_hits"].labels(offer.figure, offer.format)


@dataclass
class FastPathStats:
    hits: int = 0  # 200s answered here
    not_modified: int = 0  # 304s answered here
    registered: int = 0


class FastPath:
    """The ASGI layer in front of the app (outermost: it must be cheap for everything else)."""

    def __init__(self, app: ASGIApp, state: AppState, max_entries: int) -> None:
        self.app = app
        self.state = state
        self.max_entries = max_entries
        self.stats = FastPathStats()
        self._table: OrderedDict[tuple[bytes, bytes], _Entry] = OrderedDict()

    def clear(self) -> None:
        self._table.clear()

    def __len__(self) -> int:
        return len(self._table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.max_entries:
            await self.app(scope, receive, send)
            return
        target = (scope.get("raw_path") or scope["path"].encode(), scope["query_string"])
        entry = self._table.get(target)
        if entry is not None and await self._answer(entry, target, scope, send):
            return
        await self.app(scope, receive, self._capturing(scope, target, send))

    async def _answer(
        self, entry: _Entry, target: tuple[bytes, bytes], scope: Scope, send: Send
    ) -> bool:
        state = self.state
        renderer = entry.renderer
        if (
            state.renderer is not renderer
            or state.metrics is not entry.metrics
            or time.monotonic() >= entry.fresh_until
            or renderer.generation(entry.offer.figure) != entry.generation
        ):
            del self._table[target]  # stale: the slow path answers, and may offer it again
            return False
        condition = None
        for name, value in scope["headers"]:
            if name in _SLOW:
                return False
            if name == b"if-none-match":
                if condition is not None:
                    return False
                condition = value
        if condition is not None:
            matched = _names(condition, entry.tag)
            if matched is None:
                return False
            if matched:
                await send(
                    {"type": "http.response.start", "status": 304, "headers": entry.headers_304}
                )
                await send({"type": "http.response.body", "body": b""})
                entry.not_modified.inc()
                self.stats.not_modified += 1
                return True
        data = renderer.cached(entry.key)
        if data is None:
            del self._table[target]
            return False
        await send({"type": "http.response.start", "status": 200, "headers": entry.headers})
        await send({"type": "http.response.body", "body": data})
        entry.ok.inc()
        entry.hits.inc()
        renderer.stats.cache_hits += 1
        self.stats.hits += 1
        self._table.move_to_end(target)
        return True

    def _capturing(self, scope: Scope, target: tuple[bytes, bytes], send: Send) -> Send:
        """``send``, watching for a 200 its view offered, to keep its target once it is sent."""
        start: Message | None = None
        body: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            kind = message["type"]
            if kind == "http.response.start":
                start = message if message.get("status") == 200 else None
            elif kind == "http.response.body" and start is not None:
                offered = scope.get(SCOPE_KEY)
                if offered is None:
                    start = None
                else:
                    body.append(message.get("body", b""))
                    if not message.get("more_body", False):
                        self._register(target, offered, start, b"".join(body))
                        start = None
            await send(message)

        return capture

    def _register(
        self, target: tuple[bytes, bytes], offered: Offer, start: Message, body: bytes
    ) -> None:
        state = self.state
        renderer, metrics = state.renderer, state.metrics
        if renderer is None or metrics is None or len(target[0]) + len(target[1]) > MAX_TARGET:
            return
        if renderer.cached(offered.key) != body:
            return  # not the cache's bytes as they are (coded, or the entry left the cache)
        headers: list[tuple[bytes, bytes]] = []
        tag = None
        for name, value in start["headers"]:
            name = bytes(name).lower()
            if name in _UNFIT:
                return
            if name == b"etag":
                found = _TAG.fullmatch(value)
                tag = found.group(1) if found else None
            headers.append((name, b"hit" if name == b"x-render-cache" else bytes(value)))
        if tag is None:
            return  # only strongly tagged images
        self._table[target] = _Entry(offered, renderer, metrics, headers, tag)
        self._table.move_to_end(target)
        self.stats.registered += 1
        while len(self._table) > self.max_entries:
            self._table.popitem(last=False)


def _names(condition: bytes, tag: bytes) -> bool | None:
    """Whether an ``If-None-Match`` value names ``tag`` (weakly, in any content coding, or
    ``*``), as the slow path reads it; None when this layer does not read it the same way."""
    if not _ETAGS.fullmatch(condition):
        return None
    if condition.strip() == b"*":
        return True
    for found in _TAG.finditer(condition):
        given = found.group(1)
        for suffix in _CODING_SUFFIXES:
            if given.endswith(suffix):
                given = given[: -len(suffix)]
                break
        if given == tag:
            return True
    return False
