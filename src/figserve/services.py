"""The long-lived services of a serving worker, each an async context manager over the app's
state: it starts its service (built from settings, knowing nothing of the web app), keeps it on
the state while the app serves, and stops it on leaving. ``SERVICES`` lists them in the order
they start; they stop in the reverse order (jobs before the renderer they use).

A new service is one such function (in its own module, taking ``AppState``) and one line in
``SERVICES``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from . import stopping
from .jobs import serving_jobs
from .live.serving import serving_versions
from .live.streams import StreamHub
from .metrics import Metrics
from .render.serving import serving_renderer
from .state import AppState
from .stopping import server_stopping

log = logging.getLogger("figserve")

Service = Callable[[AppState], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def signals(state: AppState) -> AsyncIterator[None]:
    _sigterm_stops_the_server()
    watch = asyncio.ensure_future(_end_by_the_deadline())
    try:
        yield
    finally:
        watch.cancel()


async def _end_by_the_deadline() -> None:
    """In a worker of Hypercorn's own master: once the server begins to stop (its master got
    SIGTERM, even if this worker did not), end by the grace time and a margin whatever hangs.
    (A worker of ``python -m figserve serve`` arms its own deadline from its configuration.)"""
    if stopping.hypercorn_shutdown_event() is None:
        return
    await server_stopping()
    stopping.arm(stopping.graceful_timeout() + stopping.MARGIN, "its server began to stop")


@asynccontextmanager
async def metrics(state: AppState) -> AsyncIterator[None]:
    state.metrics = Metrics.start()
    try:
        yield
    finally:
        state.metrics.stop()
        state.metrics = None


@asynccontextmanager
async def renderer(state: AppState) -> AsyncIterator[None]:
    async with serving_renderer(state.settings, state.registry, state.metrics) as started:
        state.renderer = started
        try:
            yield
        finally:
            # The render processes are killed: renders still running end with a 503.
            state.renderer = None


@asynccontextmanager
async def versions(state: AppState) -> AsyncIterator[None]:
    assert state.renderer is not None
    async with serving_versions(
        state.settings, state.registry, state.renderer, state.metrics
    ) as started:
        state.versions = started
        try:
            yield
        finally:
            state.versions = None


@asynccontextmanager
async def jobs(state: AppState) -> AsyncIterator[None]:
    assert state.renderer is not None
    async with serving_jobs(state.settings, state.registry, state.renderer) as service:
        state.jobs = service
        try:
            yield
        finally:
            # Running jobs go back to the queue with what they kept.
            state.jobs = None


@asynccontextmanager
async def streams(state: AppState) -> AsyncIterator[None]:
    """Live pages' streams (after the renderer and the versions service; stopped first)."""
    if state.versions is None or state.renderer is None:
        log.warning("live streams are off: no data versions service")
        yield
        return
    observer = state.metrics.live if state.metrics is not None else None
    hub = StreamHub(state.settings, state.registry, state.versions, state.renderer.render, observer)
    await hub.start()
    # A stopping server ends streams at once (clients reconnect elsewhere) rather than
    # letting them hold the grace time.
    stop = asyncio.ensure_future(server_stopping())
    stop.add_done_callback(lambda t: t.cancelled() or hub.shutdown())
    state.streams = hub
    try:
        yield
    finally:
        state.streams = None
        stop.cancel()
        await hub.close()


SERVICES: list[Service] = [signals, metrics, renderer, versions, jobs, streams]


def _sigterm_stops_the_server() -> None:
    """In a Hypercorn worker, leave a SIGTERM to the master, which stops every worker gracefully.

    Hypercorn stops gracefully when its master gets SIGTERM, but a worker that gets SIGTERM
    itself (``kill -- -PGID``, systemd's KillMode=control-group, or the master's own
    ``terminate()`` of the remaining workers once one has exited) dies at once, dropping every
    in-flight response. So while its master runs, a worker ignores its own SIGTERM: the master got
    one too (process group) or is already stopping the workers, and it tells every worker to stop
    accepting and finish in-flight requests within ``graceful_timeout``. The worker must not
    signal the master itself: a second SIGTERM arriving inside the master's handler deadlocks it
    on the lock of the shared shutdown event.
    """
    parent = multiprocessing.parent_process()
    if parent is None or threading.current_thread() is not threading.main_thread():
        return  # not a spawned worker: Hypercorn (or the caller) handles signals itself
    master = parent.pid
    stopping.enable()  # a worker of Hypercorn's own master: its stops are watched

    def on_sigterm(signum: int, frame: object) -> None:
        if os.getppid() == master:
            logging.getLogger("figserve").info(
                "worker %d got SIGTERM: the master %d stops the workers gracefully",
                os.getpid(),
                master,
            )
            # Whatever wedges the stop, this worker ends by the grace time and a margin.
            stopping.arm(stopping.graceful_timeout() + stopping.MARGIN, "a stop began")
        else:  # orphaned: nobody will tell this worker to stop, so stop now
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
