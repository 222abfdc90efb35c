"""Turning figure functions into image bytes, off the event loop.

The renderer owns a bounded thread pool, the render cache and the bookkeeping that keeps a
worker healthy under load: an admission limit (shed instead of queueing forever), a deadline per
render, single-flight for identical deterministic renders, and cancellation of queued renders
whose requester left. It knows nothing of HTTP: callers get bytes or one of the exceptions below.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import io
import json
import logging
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import matplotlib
import numpy as np
from cachetools import LRUCache
from matplotlib.figure import Figure
from PIL import Image
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
    """Draw and encode one figure; thread-safe because the Figure is private to the call."""
    fig = Figure(figsize=job.canvas.figsize, dpi=job.canvas.dpi)
    job.draw(fig)
    buf = io.BytesIO()
    if job.format == "png":
        # savefig draws exactly as for its own PNG (layout passes included); only the
        # encoding differs, see _png.
        fig.savefig(buf, format="rgba", dpi=job.canvas.dpi)
        return _png(
            buf.getbuffer(), job.canvas.width_px, job.canvas.height_px, job.canvas.dpi, png_level
        )
    fig.savefig(buf, format=job.format, dpi=job.canvas.dpi, **_save_options(job.format, png_level))
    return buf.getvalue()


_PNG_SOFTWARE = f"Matplotlib version{matplotlib.__version__}, https://matplotlib.org/".encode()


def _png(rgba: memoryview, width: int, height: int, dpi: float, level: int) -> bytes:
    """The PNG matplotlib would write (same pixels and metadata), for a fraction of the CPU.

    Pillow tries every PNG filter on every row; on flat-coloured plots filter "none" compresses
    as well or better and costs nothing, which makes encoding 3-5x cheaper. Opaque images (all
    of them unless a figure sets a transparent background) are stored as RGB: same pixels,
    fewer bytes.
    """
    if len(rgba) != width * height * 4:
        raise ValueError(f"expected {width}x{height} RGBA pixels, got {len(rgba)} bytes")
    opaque = bool((np.frombuffer(rgba, "<u4") >= 0xFF000000).all())
    channels, color_type = (3, 2) if opaque else (4, 6)
    pixels = Image.frombuffer("RGBA", (width, height), rgba, "raw", "RGBA", 0, 1).tobytes(
        "raw", "RGB" if opaque else "RGBA"
    )
    rows = np.zeros((height, 1 + width * channels), np.uint8)  # column 0: filter type "none"
    rows[:, 1:] = np.frombuffer(pixels, np.uint8).reshape(height, -1)
    ppm = int(dpi / 0.0254 + 0.5)  # pixels per metre, rounded as Pillow does
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)),
            _png_chunk(b"tEXt", b"Software\0" + _PNG_SOFTWARE),
            _png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1)),
            _png_chunk(b"IDAT", zlib.compress(rows, level)),
            _png_chunk(b"IEND", b""),
        ]
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    # A closed loop means the server is shutting down and nobody is counting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    etag: str | None
    cache: Literal["hit", "miss", "shared", "off"]


@dataclass
class RenderStats:
    """Counters of one renderer; read by tests. ``RenderObserver`` sees the same events."""

    started: int = 0  # renders a thread actually ran
    finished: int = 0
    failed: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    rejected: int = 0
    timeouts: int = 0
    cancelled: int = 0  # queued renders dropped because nobody waited for them any more


class RenderObserver:
    """Receives every renderer event as it happens (metrics); the base class ignores them.

    ``count`` gets a ``RenderStats`` field name. ``queued`` and ``running`` get +1/-1 as renders
    enter and leave the queue and the threads. ``count("started")``, ``running`` and
    ``rendered`` are called from render threads, the rest from the event loop.
    """

    def count(self, event: str, job: RenderJob) -> None:
        pass

    def rendered(self, job: RenderJob, seconds: float) -> None:
        pass

    def queued(self, delta: int) -> None:
        pass

    def running(self, delta: int) -> None:
        pass


@dataclass
class _Flight:
    job: RenderJob
    # Resolved by ``_finished`` on the loop, after the bookkeeping, so a waiter never sees the
    # result before the cache has it.
    future: asyncio.Future[bytes]
    work: concurrent.futures.Future[tuple[bytes, float]]
    waiters: int = 0


class Renderer:
    """Owns the render thread pool; create one per serving app, close it when serving stops."""

    def __init__(self, settings: Settings, observer: RenderObserver | None = None) -> None:
        self.settings = settings
        self.stats = RenderStats()
        self.observer = observer or RenderObserver()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.render_threads, thread_name_prefix="figserve-render"
        )
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=settings.cache_bytes, getsizeof=len)
        self._flights: dict[str, _Flight] = {}
        self._pending = 0  # admitted renders whose thread work has not ended
        self._running = 0  # renders a thread is executing right now
        self._lock = threading.Lock()
        self.ready = False

    @property
    def pending(self) -> int:
        """Admitted renders, queued or running: what the admission limit counts."""
        return self._pending

    @property
    def in_flight(self) -> int:
        """Renders a thread is executing right now."""
        return self._running

    @property
    def queued(self) -> int:
        return max(0, self._pending - self._running)

    def _count(self, event: str, job: RenderJob) -> None:
        setattr(self.stats, event, getattr(self.stats, event) + 1)
        self.observer.count(event, job)

    def cached(self, key: str) -> bytes | None:
        return self._cache.get(key)

    async def render(self, job: RenderJob) -> Rendered:
        media_type = MEDIA_TYPES[job.format]
        t0 = time.perf_counter()
        if job.key is not None:
            data = self._cache.get(job.key)
            if data is not None:
                self._count("cache_hits", job)
                self._log(job, "hit", t0, len(data))
                return Rendered(data, media_type, job.etag, "hit")
            self._count("cache_misses", job)
        flight = self._flights.get(job.key) if job.key is not None else None
        if flight is not None and flight.future.cancelled():
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
            self._count("rejected", job)
            raise Overloaded(f"{self._pending} renders are already queued or running")
        loop = asyncio.get_running_loop()
        self._pending += 1
        self.observer.queued(1)
        try:
            work = self._executor.submit(self._run, job)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._pending -= 1
            self.observer.queued(-1)
            raise Overloaded("the server is stopping") from None
        flight = _Flight(job, loop.create_future(), work)
        # Bookkeeping follows the thread's work, not the waiters: a render that outlives its
        # requester (timeout) still occupies a thread and still counts against the limit.
        work.add_done_callback(lambda _: _call_soon(loop, self._finished, flight))
        if job.key is not None:
            self._flights[job.key] = flight
        return flight

    def _run(self, job: RenderJob) -> tuple[bytes, float]:
        with self._lock:
            self.stats.started += 1
            self._running += 1
        self.observer.queued(-1)
        self.observer.running(1)
        self.observer.count("started", job)
        t0 = time.perf_counter()
        try:
            data = encode(job, self.settings.png_compress_level)
            seconds = time.perf_counter() - t0
            self.observer.rendered(job, seconds)
            return data, seconds
        finally:
            with self._lock:
                self._running -= 1
            self.observer.running(-1)

    def _finished(self, flight: _Flight) -> None:
        job, work, future = flight.job, flight.work, flight.future
        self._pending -= 1
        if job.key is not None and self._flights.get(job.key) is flight:
            del self._flights[job.key]
        if work.cancelled():
            # Never picked up by a thread, so it left the queue here.
            self.observer.queued(-1)
            self._count("cancelled", job)
            if not future.done():
                future.cancel()  # the pool dropped it (closing); waiters are told in _wait
            return
        error = work.exception()
        if error is not None:
            self._count("failed", job)
            log.error("render failed figure=%s format=%s", job.label, job.format, exc_info=error)
            if not future.done():
                future.set_exception(error)
            return
        self._count("finished", job)
        data = work.result()[0]
        if job.key is not None and len(data) <= self._cache.maxsize:
            # Late results of timed-out deterministic renders are kept for the next request.
            self._cache[job.key] = data
        if not future.done():
            future.set_result(data)

    async def _wait(self, flight: _Flight) -> bytes:
        flight.waiters += 1
        try:
            async with asyncio.timeout(self.settings.render_timeout):
                return await asyncio.shield(flight.future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.future.cancelled() and task is not None and not task.cancelling():
                # The pool dropped the queued render (closing), not our caller: answer, not hang.
                raise Overloaded("the server is stopping") from None
            raise
        except TimeoutError:
            self._count("timeouts", flight.job)
            raise RenderTimeout(
                f"render of {flight.job.label!r} took longer than "
                f"{self.settings.render_timeout:g} s"
            ) from None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done():
                # Nobody wants it any more: drop it if no thread has picked it up yet.
                flight.future.cancel()
                flight.work.cancel()

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
        try:
            await loop.run_in_executor(
                None, lambda: self._executor.shutdown(wait=True, cancel_futures=True)
            )
        except RuntimeError:  # the interpreter is exiting: no thread to wait in
            self._executor.shutdown(wait=False, cancel_futures=True)
        s = self.stats
        log.info(
            "render pool closed started=%d finished=%d failed=%d rejected=%d timeouts=%d "
            "cancelled=%d",
            s.started,
            s.finished,
            s.failed,
            s.rejected,
            s.timeouts,
            s.cancelled,
        )
