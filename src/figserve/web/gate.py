"""The gate in front of the app: a few requests start at once, the others wait their turn.

An event loop runs every ready step of every request in turn, so under a flood each step of a
health check waits behind one step of every other request in progress: its latency grows with
the number of clients. Behind the gate only ``GATE_SLOTS`` requests make progress at once (the
rest are parked, costing nothing), so what a health check waits for stays bounded however many
clients there are (``/healthz`` itself never waits here). A request keeps its place until it
ends, until it waits on something else (``step_aside()``: a render, a page thread), or for
``GATE_LEASE`` seconds, whichever is first. Past ``GATE_QUEUE`` waiting requests a new one is
refused at once, so a flood of HTTP/2 streams cannot pile up.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable

GATE_SLOTS = 2
GATE_LEASE = 0.02
GATE_QUEUE = 1024

_RELEASE: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "figserve_gate_release", default=None
)


class Gate:
    def __init__(
        self, slots: int = GATE_SLOTS, lease: float = GATE_LEASE, queue: int = GATE_QUEUE
    ) -> None:
        self.slots = slots
        self.lease = lease
        self.queue = queue
        self.waiting = 0
        self._semaphore = asyncio.Semaphore(slots)

    async def enter(self) -> Callable[[], None] | None:
        """Wait for a place; the function that gives it back (at most once, also by itself
        when the lease runs out), or None at once when ``queue`` requests wait already. The
        place is also this request's to give back early with ``step_aside()``."""
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
        _RELEASE.set(release)  # the request's own context (its task's)
        return release


def step_aside() -> None:
    """Give this request's place back now: it is about to wait on something else (a render, a
    page thread), and others may start meanwhile."""
    release = _RELEASE.get()
    if release is not None:
        release()
