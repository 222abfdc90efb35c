"""Pages built once, in a page thread, and kept while nothing they depend on changes.

The gallery and the other pages cost milliseconds of CPU to build (a form per figure from its
schema, a template), and a user's page may cost more. So no page is built on the event loop,
and none is built twice while its inputs are the same:

- A page's **key** is everything it depends on: the page and the request inputs it reads (its
  path, its query), the template context of this request (context processors), and
  ``state.page_generation()``, which moves when a figure's data changes. Settings and the
  figure catalog are fixed for the life of a worker, so the cache (per worker) keys on them by
  living as long as they do. A user's page also records the template files it used, and is
  built again when one of them (or its folder) changes.
- A miss is built in the page thread (``PAGE_THREADS``; contextvars copied, so
  ``figure()`` and ``url_for`` work there); concurrent requests for one key share one build,
  and at most ``PAGE_QUEUE_LIMIT`` builds wait at once (more answer 503 with ``Retry-After``).
- An entry keeps the page with its strong ETag and its gzip and brotli bodies, so a hit costs
  the event loop a lookup and a copy, and a 304 less. The cache is an LRU bounded by
  ``FIGSERVE_PAGE_CACHE_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextvars
import gzip
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from quart import Quart, Response, current_app, request

from ..config import Settings
from .errors import Problem, problem_response
from .gate import step_aside
from .sandbox import PageLimits
from .state import AppState, app_state
from .transfer import (
    BROTLI_QUALITY,
    GZIP_LEVEL,
    MIN_COMPRESS_BYTES,
    REVALIDATE,
    body_tag,
    brotli,
    encoding_for,
    matches,
    not_modified,
    variant_tag,
)

PAGE_THREADS = 1  # pages build in Python, under the GIL: a second thread builds no faster and
# takes the event loop more of its turns (measured: /healthz p99 under a page flood)
PAGE_QUEUE_LIMIT = 64
# While pages build, the event loop beats every LOOP_TICK seconds. A page thread that finds
# the last beat older than LOOP_LAG (the loop has work, or waits for the interpreter) waits at
# its next pause for the next beat: the loop's work (a health check, a cached page) goes
# first, the page's a little later. It waits at most GIVE_WAY seconds, and never longer than
# it ran since its last pause, so a page is at most twice as slow (a late beat may also mean a
# busy machine, not a busy loop).
LOOP_TICK = 0.001
LOOP_LAG = 0.002
GIVE_WAY = 0.005
MAX_ENTRIES = 4096
# Context values a page never shows: the request and its state, which the key covers.
_REQUEST_CONTEXT = frozenset({"request", "session", "g", "config"})

Dep = tuple[str, int, int]  # a file a page was built from: path, mtime_ns, size


def stamp(path: str) -> Dep:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1)
    return (path, st.st_mtime_ns, st.st_size)


@dataclass
class Built:
    """What a page thread hands back: the page, or the problem it met instead."""

    html: str = ""
    status: int = 200
    deps: tuple[Dep, ...] = ()
    problem: Problem | None = None
    keep: bool = True  # False: not worth keeping (a render past its deadline may fit later)


@dataclass
class Entry:
    status: int
    etag: str
    bodies: dict[str | None, bytes]  # content coding (None: identity) -> body
    deps: tuple[Dep, ...] = ()
    problem: Problem | None = None
    keep: bool = True
    logged: bool = False
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(b) for b in self.bodies.values()) + 512

    def fresh(self) -> bool:
        return all(stamp(dep[0]) == dep for dep in self.deps)


def _entry(built: Built) -> Entry:
    """Encode, tag and compress a built page (in the page thread)."""
    data = built.html.encode()
    bodies: dict[str | None, bytes] = {None: data}
    if len(data) >= MIN_COMPRESS_BYTES and built.problem is None:
        bodies["gzip"] = gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
        if brotli is not None:
            bodies["br"] = brotli.compress(data, quality=BROTLI_QUALITY)
    return Entry(built.status, body_tag(data), bodies, built.deps, built.problem, built.keep)


class PageCache:
    """An LRU of entries bounded by bytes and count."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._bytes = 0

    def get(self, key: Hashable) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not entry.fresh():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, entry: Entry) -> None:
        if not entry.keep or entry.size > self.max_bytes // 4:
            return
        self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.size
        while self._bytes > self.max_bytes or len(self._entries) > MAX_ENTRIES:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    def __len__(self) -> int:
        return len(self._entries)


class PageService:
    """Page threads, the cache and single flight of one worker."""

    def __init__(self, settings: Settings) -> None:
        self.limits = PageLimits(settings.page_timeout, settings.page_max_bytes)
        self.cache = PageCache(settings.page_cache_bytes)
        self.builds = 0  # pages built (tests and the benchmark read it)
        self._executor = ThreadPoolExecutor(PAGE_THREADS, thread_name_prefix="figserve-page")
        self._inflight: dict[Hashable, asyncio.Future[Entry]] = {}
        self._beat = time.monotonic()
        self._beats = 0
        self._beaten = threading.Condition()
        self._resumed = threading.local()  # when each page thread last went on from a pause
        self._beating = False

    async def page(self, key: Hashable, build: Callable[[], Built]) -> Entry:
        """The entry of ``key``: cached, joined to a build in flight, or built now."""
        entry = self.cache.get(key)
        if entry is not None:
            return entry
        future = self._inflight.get(key)
        if future is None:
            if len(self._inflight) >= PAGE_QUEUE_LIMIT:
                raise Problem(
                    503,
                    "Too many pages",
                    "The server is building many pages; try again shortly.",
                    headers={"Retry-After": "1"},
                )
            context = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            if not self._beating:
                self._beating = True
                self._heartbeat()
            queued = time.monotonic() + self.limits.timeout  # the latest a build may start
            future = loop.run_in_executor(self._executor, context.run, _build, build, queued)
            self._inflight[key] = future
            future.add_done_callback(lambda done: self._finished(key, done))
        step_aside()  # the build is another thread's work: let other requests start
        return await asyncio.shield(future)

    def _heartbeat(self) -> None:
        with self._beaten:
            self._beat = time.monotonic()
            self._beats += 1
            self._beaten.notify_all()
        if self._inflight:
            asyncio.get_running_loop().call_later(LOOP_TICK, self._heartbeat)
        else:
            self._beating = False

    def pause(self) -> None:
        """Called by a building page now and then (in its thread): give the event loop's
        thread the interpreter if it has been waiting for it."""
        now = time.monotonic()
        ran = now - getattr(self._resumed, "at", now)
        if now - self._beat > LOOP_LAG and ran > 0:
            with self._beaten:
                seen = self._beats
                self._beaten.wait_for(lambda: self._beats != seen, min(GIVE_WAY, ran))
            now = time.monotonic()
        self._resumed.at = now

    def _finished(self, key: Hashable, done: asyncio.Future[Entry]) -> None:
        self._inflight.pop(key, None)
        self.builds += 1
        if not done.cancelled() and done.exception() is None:
            self.cache.put(key, done.result())

    def close(self) -> None:
        # Builds in flight end by their deadline; nothing waits for them here.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.cache.clear()


def _build(build: Callable[[], Built], start_by: float) -> Entry:
    if time.monotonic() > start_by:  # it waited its page timeout behind other builds
        busy = Problem(
            503,
            "Too many pages",
            "The server is building many pages; try again shortly.",
            headers={"Retry-After": "1"},
        )
        return _entry(Built(problem=busy, keep=False))
    return _entry(build())


def install(app: Quart, state: AppState) -> None:
    """The page service of ``app``: started while it serves, kept on ``state.pages``."""

    @app.while_serving
    async def _pages() -> AsyncIterator[None]:
        service = state.pages = PageService(state.settings)
        try:
            yield
        finally:
            state.pages = None
            service.close()


def page_service() -> PageService:
    service = app_state().pages
    if service is None:  # only while the server starts or stops
        raise Problem(503, "Not ready", "Pages are not served yet.", headers={"Retry-After": "1"})
    return service


async def context_key(context: dict[str, Any]) -> tuple[Any, ...]:
    """Fill ``context`` as Quart would for a template; the part of it a key must hold."""
    await current_app.update_template_context(context)
    return tuple(sorted((k, repr(v)) for k, v in context.items() if k not in _REQUEST_CONTEXT))


async def own_page(
    template: str, key: Hashable, build: Callable[[], tuple[dict[str, Any], int]]
) -> Response:
    """One of figserve's pages: ``build()`` (run in a page thread) gives its template context
    and status; ``key`` names what it depends on besides the template context."""
    service = page_service()
    extra: dict[str, Any] = {}
    full_key = ("own", template, key, await context_key(extra), app_state().page_generation())
    env = _sync_env()

    def render() -> Built:
        context, status = build()
        html = env.get_template(template).render({**extra, **context})
        return Built(html, status)

    return await respond(await service.page(full_key, render))


def _sync_env() -> Any:
    """figserve's own templates, rendered synchronously (in a page thread)."""
    app = current_app
    env = app.extensions.get("figserve_sync_jinja")
    if env is None:
        env = app.extensions["figserve_sync_jinja"] = app.jinja_env.overlay(enable_async=False)
    return env


async def respond(entry: Entry) -> Response:
    """The response of an entry: 304 when the client has it, else the body in the coding the
    client takes best, with its own ETag."""
    if entry.problem is not None:
        response = await problem_response(entry.problem, logged=entry.logged)
        entry.logged = True  # one log line per built failure, not per request
        return response
    if entry.status != 200:
        return Response(entry.bodies[None], status=entry.status, mimetype="text/html")
    coding = encoding_for("text/html")
    if coding not in entry.bodies:
        coding = None
    if request.method in {"GET", "HEAD"} and matches(entry.etag):
        return not_modified(variant_tag(entry.etag, coding), REVALIDATE, ["Accept-Encoding"])
    resp = Response(entry.bodies[coding], status=200, mimetype="text/html")
    resp.headers["ETag"] = variant_tag(entry.etag, coding)
    resp.headers["Cache-Control"] = REVALIDATE
    resp.vary.add("Accept-Encoding")
    if coding is not None:
        resp.headers["Content-Encoding"] = coding
    return resp
