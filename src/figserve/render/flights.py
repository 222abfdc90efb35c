"""A render in flight: what waits for it, and what it gives (the bytes and what the render
process said about them). Renders of one key share one flight (single-flight)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Literal

from .encode import RenderJob


@dataclass(frozen=True)
class Drawn:
    """The bytes of one render and what the render process said about them."""

    data: bytes
    # The render process ran the code the job was made for (its code version matched): only
    # then may the bytes be cached and tagged.
    current: bool = True
    warm: str = "off"  # hit: updated a kept figure; miss: drawn fresh to keep; off: neither
    update_failed: str = ""  # the error of a kept figure's update (it was drawn fresh)


class Uncacheable(Exception):
    """Rendered, but not to be stored in any cache level (carries the result through them)."""

    def __init__(self, drawn: Drawn) -> None:
        super().__init__("the render's code version differs from the job's")
        self.drawn = drawn


@dataclass
class Flight:
    job: RenderJob
    # Resolved by ``_finished`` on the loop, after the bookkeeping, so a waiter never sees the
    # result before the cache has it.
    future: asyncio.Future[Drawn]
    # The render thread's work; None for a flight through the shared cache, whose ``task``
    # looks the bytes up in Redis and, if it must render them, starts the ``inner`` flight.
    work: concurrent.futures.Future[Drawn] | None
    waiters: int = 0
    task: asyncio.Task[None] | None = None
    inner: Flight | None = None
    source: Literal["miss", "redis"] = "miss"

    def abandon(self) -> None:
        """Nobody waits for it any more: drop its render if no thread has picked it up."""
        if self.work is not None:
            self.work.cancel()
        elif self.inner is not None:
            self.inner.abandon()  # a render that runs finishes, and is stored for the next
        elif self.task is not None:
            self.task.cancel()  # still looking up or waiting for another instance
