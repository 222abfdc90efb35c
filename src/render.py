"""Turning figure functions into image bytes, off the event loop.

The renderer owns a bounded thread pool, the render cache and the bookkeeping that keeps a
worker healthy under load: an admission limit (shed instead of queueing forever), a deadline per
render, single-flight for identical deterministic renders, and cancellation of queued renders
whose requester left. It knows nothing of HTTP: callers get bytes or one of the exceptions below.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import matplotlib
from cachetools import LRUCache
from matplotlib.figure import Figure
from pydantic import BaseModel, ConfigDict, Field

from .config import Settings
from .figures import FigureParams, FigureSpec

log = logging.getLogger("figserve.render")

# SVG element ids are derived from this salt instead of random numbers: same figure, same bytes.
matplotlib.rcParams["svg.hashsalt"] = "figserve"

MEDIA_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
}
Format = Literal["png", "svg", "pdf", "webp", "jpeg"]
# Part of every cache key and ETag: a new matplotlib may draw the same figure differently.
_KEY_SALT = f"figserve-1/matplotlib-{matplotlib.__version__}"
CSS_DPI = 100  # one CSS pixel per figure "dot" at dpr 1


class ImageOptions(BaseModel):
    """Output format and size. Sizes are CSS pixels; ``dpr`` (or ``dpi``) scales the raster."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    format: Format = Field("png", description="Image format.")
    w: int = Field(400, ge=50, le=3000, description="Width in CSS pixels.")
    h: int = Field(300, ge=50, le=3000, description="Height in CSS pixels.")
    dpr: float = Field(1.0, ge=1, le=3, description="Device pixel ratio (1-3); or give dpi.")
    dpi: int | None = Field(
        None, ge=20, le=600, description="Dots per inch (100 per CSS pixel); instead of dpr."
    )


class LimitExceeded(ValueError):
    """A request that is valid on its own but too large for this server."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class Overloaded(RuntimeError):
    """The admission limit is reached: the caller should retry later."""

    retry_after = 1


class RenderTimeout(RuntimeError):
    """The render did not finish within the deadline."""

    retry_after = 2


@dataclass(frozen=True)
class Canvas:
    width_px: int
    height_px: int
    dpi: float

    @property
    def figsize(self) -> tuple[float, float]:
        # A hundredth of a pixel of slack so float rounding never drops the last pixel column.
        return ((self.width_px + 0.01) / self.dpi, (self.height_px + 0.01) / self.dpi)


def canvas_for(opts: ImageOptions, max_pixels: int) -> Canvas:
    if opts.dpi is not None and "dpr" in opts.model_fields_set:
        raise LimitExceeded("dpi", "give either dpr or dpi, not both")
    dpi = float(opts.dpi) if opts.dpi is not None else CSS_DPI * opts.dpr
    width_px = max(1, round(opts.w * dpi / CSS_DPI))
    height_px = max(1, round(opts.h * dpi / CSS_DPI))
    if width_px * height_px > max_pixels:
        raise LimitExceeded(
            "w",
            f"{width_px}x{height_px} pixels exceeds the limit of {max_pixels:,} pixels; "
            "lower w, h, dpr or dpi",
        )
    return Canvas(width_px, height_px, dpi)


@dataclass(frozen=True)
class RenderJob:
    """Everything needed to produce one image, and nothing about who asked for it."""

    draw: Callable[[Figure], None]
    canvas: Canvas
    format: str
    label: str  # figure name, for logs and metrics
    key: str | None = None  # set when the output is deterministic, so it may be cached

    @property
    def etag(self) -> str | None:
        return f'"{self.key[:40]}"' if self.key else None


def job_for(
    spec: FigureSpec, params: FigureParams, opts: ImageOptions, max_pixels: int
) -> RenderJob:
    canvas = canvas_for(opts, max_pixels)
    key = None
    if spec.deterministic(params):
        ident = {
            "salt": _KEY_SALT,
            "figure": spec.name,
            "params": params.model_dump(mode="json"),
            "format": opts.format,
            "canvas": [canvas.width_px, canvas.height_px, canvas.dpi],
        }
        key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()
    return RenderJob(
        draw=lambda fig: spec.draw(fig, params),
        canvas=canvas,
        format=opts.format,
        label=spec.name,
        key=key,
    )


def _save_options(fmt: str, png_level: int) -> dict[str, Any]:
    # Fixed metadata: no creation dates, so seeded SVG/PDF output is byte-identical.
    if fmt == "png":
        return {"pil_kwargs": {"compress_level": png_level}}
    if fmt == "svg":
        return {"metadata": {"Date": None}}
    if fmt == "pdf":
        return {"metadata": {"CreationDate": None}}
    if fmt == "webp":
        return {"pil_kwargs": {"quality": 90, "method": 4}}
    if fmt == "jpeg":
        return {"pil_kwargs": {"quality": 90}}
    raise ValueError(f"unknown format {fmt!r}")


def encode(job: RenderJob, png_level: int = 6) -> bytes:
    """Draw and encode one figure. Synchronous and thread-safe: the Figure is private to the call."""
    fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
    job.draw(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=job.format, dpi=job.canvas.dpi, **_save_options(job.format, png_level))
    return buf.getvalue()


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        pass  # the loop is gone: the server is shutting down and nobody is counting


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    etag: str | None
    cache: Literal["hit", "miss", "shared", "off"]


@dataclass
class RenderStats:
    """Counters of one renderer; read by tests and by the metrics endpoint."""

    started: int = 0  # renders a thread actually ran
    finished: int = 0
    failed: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    rejected: int = 0
    timeouts: int = 0
    cancelled: int = 0  # queued renders dropped because nobody waited for them any more


@dataclass
class _Flight:
    job: RenderJob
    future: asyncio.Future[tuple[bytes, float]]
    waiters: int = 0
    started: threading.Event = field(default_factory=threading.Event)


class Renderer:
    """Owns the render thread pool; create one per serving app, close it when serving stops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stats = RenderStats()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.render_threads, thread_name_prefix="figserve-render"
        )
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=settings.cache_bytes, getsizeof=len)
        self._flights: dict[str, _Flight] = {}
        self._pending = 0  # admitted renders whose thread work has not ended
        self._lock = threading.Lock()
        self.ready = False

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def in_flight(self) -> int:
        return sum(1 for f in self._flights.values() if f.started.is_set())

    def cached(self, key: str) -> bytes | None:
        return self._cache.get(key)

    async def render(self, job: RenderJob) -> Rendered:
        media_type = MEDIA_TYPES[job.format]
        t0 = time.perf_counter()
        if job.key is not None:
            data = self._cache.get(job.key)
            if data is not None:
                self.stats.cache_hits += 1
                self._log(job, "hit", t0, len(data))
                return Rendered(data, media_type, job.etag, "hit")
            self.stats.cache_misses += 1
        flight = self._flights.get(job.key) if job.key is not None else None
        if flight is not None and flight.future.done():
            flight = None  # abandoned by its waiters; its thread may still be finishing
        shared = flight is not None
        if flight is None:
            flight = self._start(job)
        data = await self._wait(flight)
        cache = "off" if job.key is None else ("shared" if shared else "miss")
        self._log(job, cache, t0, len(data))
        return Rendered(data, media_type, job.etag, cache)

    def _start(self, job: RenderJob) -> _Flight:
        if self._pending >= self.settings.render_queue_limit:
            self.stats.rejected += 1
            raise Overloaded(f"{self._pending} renders are already queued or running")
        loop = asyncio.get_running_loop()
        started = threading.Event()
        cfut = self._executor.submit(self._run, job, started)
        self._pending += 1
        flight = _Flight(job, asyncio.wrap_future(cfut, loop=loop), started=started)
        # Bookkeeping follows the thread's work, not the waiters: a render that outlives its
        # requester (timeout) still occupies a thread and still counts against the limit.
        cfut.add_done_callback(lambda f: _call_soon(loop, self._finished, flight, f))
        if job.key is not None:
            self._flights[job.key] = flight
        return flight

    def _run(self, job: RenderJob, started: threading.Event) -> tuple[bytes, float]:
        started.set()
        with self._lock:
            self.stats.started += 1
        t0 = time.perf_counter()
        data = encode(job, self.settings.png_compress_level)
        return data, time.perf_counter() - t0

    def _finished(self, flight: _Flight, cfut: concurrent.futures.Future) -> None:
        job = flight.job
        self._pending -= 1
        if job.key is not None and self._flights.get(job.key) is flight:
            del self._flights[job.key]
        if cfut.cancelled():
            self.stats.cancelled += 1
            return
        if cfut.exception() is not None:
            self.stats.failed += 1
            log.error(
                "render failed figure=%s format=%s",
                job.label,
                job.format,
                exc_info=cfut.exception(),
            )
            return
        self.stats.finished += 1
        if job.key is not None:
            # Late results of timed-out deterministic renders are kept for the next request.
            self._cache[job.key] = cfut.result()[0]

    async def _wait(self, flight: _Flight) -> bytes:
        flight.waiters += 1
        try:
            async with asyncio.timeout(self.settings.render_timeout):
                data, _ = await asyncio.shield(flight.future)
                return data
        except TimeoutError:
            self.stats.timeouts += 1
            raise RenderTimeout(
                f"render of {flight.job.label!r} took longer than "
                f"{self.settings.render_timeout:g} s"
            ) from None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done():
                # Nobody wants it any more: drop it if no thread has picked it up yet.
                flight.future.cancel()

    def _log(self, job: RenderJob, cache: str, t0: float, size: int) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "render figure=%s format=%s px=%dx%d cache=%s bytes=%d ms=%.1f",
                job.label,
                job.format,
                job.canvas.width_px,
                job.canvas.height_px,
                cache,
                size,
                (time.perf_counter() - t0) * 1000,
            )

    async def warm_up(self, spec: FigureSpec) -> None:
        """Render one small figure so fonts and caches are loaded before the first visitor."""
        params = spec.params()
        opts = ImageOptions(w=100, h=75)
        job = job_for(spec, params, opts, self.settings.max_pixels)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, encode, job, self.settings.png_compress_level)
        self.ready = True

    async def close(self) -> None:
        self.ready = False
        loop = asyncio.get_running_loop()
        # Queued renders are dropped; running ones finish so their responses can complete.
        await loop.run_in_executor(
            None, lambda: self._executor.shutdown(wait=True, cancel_futures=True)
        )
