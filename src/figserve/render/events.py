"""What the renderer tells its callers and observers: results, counters, events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .encode import RenderJob


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    etag: str | None
    # hit: this process's cache; shared: joined a render in flight here; redis: the cache
    # shared by every instance; miss: rendered here; off: not cacheable
    cache: Literal["hit", "miss", "shared", "redis", "off"]


@dataclass
class RenderStats:
    """Counters of one renderer; read by tests. ``RenderObserver`` sees the same events."""

    started: int = 0  # renders a thread handed to a render process
    finished: int = 0
    failed: int = 0  # the figure raised, or its process crashed or was killed
    cache_hits: int = 0
    cache_misses: int = 0  # not in this process's cache
    shared_hits: int = 0  # of those, found in the cache shared through Redis
    rejected: int = 0
    timeouts: int = 0  # requests that stopped waiting at the deadline
    cancelled: int = 0  # queued renders dropped because nobody waited for them any more
    killed: int = 0  # render processes killed at the deadline
    crashed: int = 0  # render processes that died during a render
    protocol_errors: int = 0  # render processes that answered out of turn (replaced)
    # images whose render process ran other code than the worker's (served no-store)
    version_mismatches: int = 0
    warm_hits: int = 0  # renders that updated a kept figure
    warm_misses: int = 0  # renders of a figure with an update function drawn fresh
    warm_update_failures: int = 0  # updates that raised (the figure was drawn fresh)


class RenderObserver:
    """Receives every renderer event as it happens (metrics); the base class ignores them.

    ``count`` gets a ``RenderStats`` field name. ``queued`` and ``running`` get +1/-1 as renders
    enter and leave the queue and the render processes. ``count("started")``, ``running`` and
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

    def process_state(self, figure: str, restored: list[str], recycled: list[str]) -> None:
        """A figure left state behind in its render process: ``restored`` was put back,
        ``recycled`` could not be (the process was replaced). Called from render threads."""
