"""When to look at each pair again: a heap of times, and one task that wakes at the next."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable, Hashable


class Schedule:
    """``plan(key, at)`` asks for ``due(key, now)`` once ``time.monotonic()`` reaches ``at``
    (run by ``run``, on the event loop). A key may be planned several times; ``due`` decides
    what is still to be done."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def plan(self, key: Hashable, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), key))
        self._wake.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self, due: Callable[[Hashable, float], None]) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            while self._heap and self._heap[0][0] <= now:
                _, _, key = heapq.heappop(self._heap)
                due(key, now)
            delay = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
