"""Turning render jobs into image bytes, off the event loop, with the bookkeeping of a worker.

The renderer owns a bounded thread pool and the render processes it drives (``pool.py``), the
render cache, an admission limit (shed instead of queueing forever), a deadline per wait,
single-flight for identical deterministic renders, and cancellation of queued renders whose
requester left. It knows nothing of HTTP: callers get bytes or one of ``errors.py``'s outcomes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cachetools import LRUCache

from ..config import Settings
from .encode import RenderJob
from .errors import (
    Overloaded,
    RenderCrashed,
    RenderError,
    RenderFailed,
    RenderProtocolError,
    RenderTimeout,
    RenderUnavailable,
    TooComplex,
)
from .events import Rendered, RenderObserver, RenderStats
from .forkserver import Task
from .options import MEDIA_TYPES
from .pool import PoolSettings, RenderPool
from .tasks import TaskLanes

if TYPE_CHECKING:
    from ..figures import FigureSpec
    from .shared import SharedCache

log = logging.getLogger("figserve.render")

MIB = 2**20
VERDICT_GRACE = 0.5  # seconds


def pool_settings(settings: Settings) -> PoolSettings:
    return PoolSettings(
        processes=settings.processes,
        background=settings.job_threads,
        deadline=settings.render_timeout,
        memory_bytes=settings.render_memory_mb * MIB,
        recycle_after=settings.render_recycle_after,
        recycle_rss_bytes=settings.render_recycle_rss_mb * MIB,
        probes=settings.probe_processes,
        warm_figures=settings.render_warm_figures,
    )


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    # A closed loop means the server is shutting down and nobody is counting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


@dataclass(frozen=True)
class Drawn:
    """The bytes of one render and what the render process said about them."""

    data: bytes
    # The render process ran the code the job was made for (its code version matched): only
    # then may the bytes be cached and tagged.
    current: bool = True
    warm: str = "off"  # hit: updated a kept figure; miss: drawn fresh to keep; off: neither
    update_failed: str = ""  # the error of a kept figure's update (it was drawn fresh)


class _Uncacheable(Exception):
    """Rendered, but not to be stored in any cache level (carries the result through them)."""

    def __init__(self, drawn: Drawn) -> None:
        super().__init__("the render's code version differs from the job's")
        self.drawn = drawn


@dataclass
class _Flight:
    job: RenderJob
    # Resolved by ``_finished`` on the loop, after the bookkeeping, so a waiter never sees the
    # result before the cache has it.
    future: asyncio.Future[Drawn]
    # The render thread's work; None for a flight through the shared cache, whose ``task``
    # looks the bytes up in Redis and, if it must render them, starts the ``inner`` flight.
    work: concurrent.futures.Future[Drawn] | None
    waiters: int = 0
    task: asyncio.Task[None] | None = None
    inner: _Flight | None = None
    source: Literal["miss", "redis"] = "miss"

    def abandon(self) -> None:
        """Nobody waits for it any more: drop its render if no thread has picked it up."""
        if self.work is not None:
            self.work.cancel()
        elif self.inner is not None:
            self.inner.abandon()  # a render that runs finishes, and is stored for the next
        elif self.task is not None:
            self.task.cancel()  # still looking up or waiting for another instance


class Renderer:
    """Create one per serving app; ``await start()``, then ``await close()`` when it stops."""

    def __init__(
        self,
        settings: Settings,
        observer: RenderObserver | None = None,
        *,
        preload: list[str] | None = None,
        warm_up: RenderJob | None = None,
        shared: SharedCache | None = None,
        pool: PoolSettings | None = None,
        figures: list[FigureSpec] | None = None,
    ) -> None:
        self.settings = settings
        self.stats = RenderStats()
        self.observer = observer or RenderObserver()
        self.pool = RenderPool(
            pool or pool_settings(settings),
            preload or [],
            warm_up,
            figures=figures,
            on_state=self.observer.process_state,
        )
        # The second cache level, shared by every instance (scale-out mode); None: local only.
        self.shared = shared
        # A thread per render process: it hands the render over and waits on the process's
        # socket, so a render not yet picked up by a thread can still be dropped.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.render_threads or settings.processes,
            thread_name_prefix="figserve-render",
        )
        self._lanes = TaskLanes(self.pool, settings.png_compress_level)
        self._cache: LRUCache[str, bytes] = LRUCache(maxsize=settings.cache_bytes, getsizeof=len)
        self._flights: dict[str, _Flight] = {}
        self._pending = 0  # admitted interactive renders whose thread work has not ended
        self._running = 0  # renders a render process is executing right now
        self._lock = threading.Lock()
        self._closing = False
        self._mismatched: set[str] = set()  # figures whose version mismatch was logged
        self._update_failed: set[str] = set()  # figures whose failed update was logged
        self._generations: dict[str, int] = {}  # see forget()

    async def start(self) -> None:
        """Start the render processes (warm); the app is ready when this returns."""
        await asyncio.to_thread(self.pool.start)

    @property
    def ready(self) -> bool:
        return self.pool.healthy and not self._closing

    @property
    def pending(self) -> int:
        """Admitted interactive renders, queued or running: what the admission limit counts."""
        return self._pending

    @property
    def in_flight(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return max(0, self._pending - self._running)

    def _count(self, event: str, job: RenderJob) -> None:
        setattr(self.stats, event, getattr(self.stats, event) + 1)
        self.observer.count(event, job)

    def cached(self, key: str) -> bytes | None:
        """The bytes of ``key`` in this worker's render cache (a hit refreshes it), or None."""
        return self._cache.get(key)

    def forget(self, figure: str) -> None:
        """Stop answering ``figure``'s images from the fast path at once (its data changed):
        the next request of each goes the whole way again."""
        self._generations[figure] = self._generations.get(figure, 0) + 1

    def generation(self, figure: str) -> int:
        """How many times ``figure`` was forgotten: a fast-path entry made before is stale."""
        return self._generations.get(figure, 0)

    async def render(self, job: RenderJob) -> Rendered:
        media_type = MEDIA_TYPES[job.format]
        t0 = time.perf_counter()
        if job.key is not None:
            data = self._cache.get(job.key)
            if data is not None:
                self._count("cache_hits", job)
                self._log(job, "hit", t0, len(data), "off")
                return Rendered(data, media_type, job.etag, "hit")
            self._count("cache_misses", job)
        flight = self._flights.get(job.key) if job.key is not None else None
        if flight is not None and flight.future.cancelled():
            flight = None  # abandoned by its waiters; its render may still be finishing
        joined = flight is not None
        if flight is None:
            if job.key is not None and self.shared is not None and self.shared.available:
                flight = self._start_shared(job)
            else:
                flight = self._start(job)
        drawn = await self._wait(flight)
        cache: Literal["hit", "miss", "shared", "redis", "off"]
        cache = "off" if job.key is None else ("shared" if joined else flight.source)
        if not drawn.current:
            cache = "off"  # another code version: never tagged or kept
        self._log(job, cache, t0, len(drawn.data), drawn.warm)
        return Rendered(drawn.data, media_type, job.etag if drawn.current else None, cache)

    async def run_background(self, task: Task, deadline: float | None = None) -> Any:
        """Run a job's task in the background lane: lower priority, no cache, no admission
        limit (the job runner bounds its own work), the same deadline and supervision."""
        return await self._lanes.run("background", task, deadline)

    async def run_probe(self, task: Task, deadline: float) -> Any:
        """Run a small task (a figure's data-version function) in the probe lane, killed at
        ``deadline`` seconds: ``RenderTimeout`` or ``TooComplex`` when it was stopped,
        ``RenderFailed`` when it raised, ``Overloaded`` when too many probes wait already,
        ``RenderUnavailable`` when no probe process can run it. Its result is plain data."""
        return await self._lanes.probe(task, deadline)

    def _start_shared(self, job: RenderJob) -> _Flight:
        """A flight that asks the shared cache first; it renders here only if it must."""
        assert job.key is not None and self.shared is not None
        if self._closing:
            raise RenderUnavailable("the server is stopping")
        flight = _Flight(job, asyncio.get_running_loop().create_future(), None)
        flight.task = asyncio.create_task(self._through_shared(flight, self.shared))
        self._flights[job.key] = flight
        return flight

    async def _through_shared(self, flight: _Flight, shared: SharedCache) -> None:
        job, future = flight.job, flight.future
        assert job.key is not None

        async def render_here() -> bytes:
            flight.inner = self._start(job, register=False)
            drawn = await flight.inner.future
            if not drawn.current:
                raise _Uncacheable(drawn)  # the shared level must not store it either
            return drawn.data

        try:
            data, source = await shared.fetch_or_render(job.key, render_here)
        except asyncio.CancelledError:
            if not future.done():
                future.cancel()
            raise
        except _Uncacheable as exc:
            if not future.done():
                future.set_result(exc.drawn)
            return
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                future.exception()  # retrieved: waiters that left need not see it
            return
        finally:
            if self._flights.get(job.key) is flight:
                del self._flights[job.key]
        if source == "redis":
            flight.source = "redis"
            self._count("shared_hits", job)
            if len(data) <= self._cache.maxsize:
                self._cache[job.key] = data
        drawn = Drawn(data)
        if source != "redis" and flight.inner is not None and flight.inner.future.done():
            drawn = flight.inner.future.result()  # rendered here: what its process said
        if not future.done():
            future.set_result(drawn)

    def _start(self, job: RenderJob, register: bool = True) -> _Flight:
        if self._closing:
            raise RenderUnavailable("the server is stopping")
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
            raise RenderUnavailable("the server is stopping") from None
        flight = _Flight(job, loop.create_future(), work)
        # Bookkeeping follows the render, not the waiters: a render that outlives its
        # requester (timeout) still occupies a process and still counts against the limit.
        work.add_done_callback(lambda _: _call_soon(loop, self._finished, flight))
        if job.key is not None and register:
            self._flights[job.key] = flight
        return flight

    def _run(self, job: RenderJob) -> Drawn:
        started = False

        def on_start() -> None:
            nonlocal started
            started = True
            with self._lock:
                self.stats.started += 1
                self._running += 1
            self.observer.queued(-1)
            self.observer.running(1)
            self.observer.count("started", job)

        try:
            outcome = self.pool.run(job, self.settings.png_compress_level, on_start=on_start)
            self.observer.rendered(job, outcome.cpu_seconds)
            meta = outcome.meta
            warm, failed = meta.get("warm"), meta.get("update_failed")
            return Drawn(
                outcome.value,
                current=job.spec is None or meta.get("version") == job.version,
                warm=warm if warm in {"hit", "miss"} else "off",
                update_failed=failed if isinstance(failed, str) else "",
            )
        finally:
            if started:
                with self._lock:
                    self._running -= 1
                self.observer.running(-1)
            else:  # it never reached a process (the pool is closing or broken)
                self.observer.queued(-1)

    def _finished(self, flight: _Flight) -> None:
        job, work, future = flight.job, flight.work, flight.future
        assert work is not None
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
            self._record_failure(job, error)
            if not future.done():
                future.set_exception(error)
            return
        self._count("finished", job)
        drawn = work.result()
        self._count_warm(job, drawn)
        if not drawn.current:
            self._mismatch(job)
        elif job.key is not None and len(drawn.data) <= self._cache.maxsize:
            # Late results of deterministic renders whose waiters left are kept for the next.
            self._cache[job.key] = drawn.data
        if not future.done():
            future.set_result(drawn)

    def _count_warm(self, job: RenderJob, drawn: Drawn) -> None:
        if drawn.warm != "off":
            self._count("warm_hits" if drawn.warm == "hit" else "warm_misses", job)
        if drawn.update_failed:
            self._count("warm_update_failures", job)
            if job.label not in self._update_failed:
                self._update_failed.add(job.label)
                log.warning(
                    "figure %s: its update function raised (%s); the kept figure was dropped "
                    "and the image drawn fresh (fix the update function, or remove update=)",
                    job.label,
                    drawn.update_failed.splitlines()[-1][:300],
                )

    def _mismatch(self, job: RenderJob) -> None:
        """A render process ran other code than this worker made the job for (a figure module
        edited on disk, and a fork server started again since): serve, never keep."""
        self._count("version_mismatches", job)
        if job.label in self._mismatched:
            return
        self._mismatched.add(job.label)
        log.warning(
            "figure %s: the render processes run other code than this worker (its module "
            "changed on disk since figserve started); its images are served with "
            "Cache-Control: no-store and never cached until figserve is restarted: restart it",
            job.label,
        )

    def _record_failure(self, job: RenderJob, error: BaseException) -> None:
        self._count("failed", job)
        if isinstance(error, RenderError) and error.stopped:
            self._count("killed", job)
            log.warning("render stopped at its deadline figure=%s: %s", job.label, error)
        elif isinstance(error, RenderProtocolError):
            self._count("protocol_errors", job)
            log.error(
                "render process replaced figure=%s format=%s: %s", job.label, job.format, error
            )
        elif isinstance(error, RenderCrashed):
            self._count("crashed", job)
            log.error("render process died figure=%s format=%s", job.label, job.format)
        elif isinstance(error, RenderFailed):
            log.error(
                "render failed figure=%s format=%s: %s\n%s",
                job.label,
                job.format,
                error,
                error.remote_traceback.rstrip(),
            )
        elif not isinstance(error, RenderUnavailable | TooComplex):
            log.error("render failed figure=%s format=%s", job.label, job.format, exc_info=error)

    async def _wait(self, flight: _Flight) -> Drawn:
        flight.waiters += 1
        try:
            # A little past the render's own deadline, so a render that started at once is
            # answered by its process's verdict (stopped: too complex or busy) rather than this.
            async with asyncio.timeout(self.settings.render_timeout + VERDICT_GRACE):
                return await asyncio.shield(flight.future)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.future.cancelled() and task is not None and not task.cancelling():
                # The pool dropped the queued render (closing), not our caller: answer, not hang.
                raise RenderUnavailable("the server is stopping") from None
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
                flight.abandon()

    def _log(self, job: RenderJob, cache: str, t0: float, size: int, warm: str) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info(
                "render figure=%s format=%s px=%dx%d cache=%s warm=%s bytes=%d ms=%.1f",
                job.label,
                job.format,
                job.canvas.width_px,
                job.canvas.height_px,
                cache,
                warm,
                size,
                (time.perf_counter() - t0) * 1000,
            )

    async def close(self) -> None:
        """Stop at once: queued renders are dropped, running ones end with their processes."""
        self._closing = True
        self._lanes.closing = True
        self.pool.close()
        loop = asyncio.get_running_loop()
        for executor in (self._executor, *self._lanes.executors):
            try:
                await loop.run_in_executor(
                    None, lambda e=executor: e.shutdown(wait=True, cancel_futures=True)
                )
            except RuntimeError:  # the interpreter is exiting: no thread to wait in
                executor.shutdown(wait=False, cancel_futures=True)
        s, p = self.stats, self.pool
        log.info(
            "render pool closed started=%d finished=%d failed=%d rejected=%d timeouts=%d "
            "cancelled=%d killed=%d crashed=%d recycled=%d",
            s.started,
            s.finished,
            s.failed,
            s.rejected,
            s.timeouts,
            s.cancelled,
            p.kills,
            p.crashes,
            p.recycled,
        )
