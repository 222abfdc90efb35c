"""A lane: the render processes for one kind of work, at most ``size`` of them at once.

``take`` hands out an idle process, preferring one that keeps the figure a render is for warm
(``warm.py``), then one that keeps none, then the one used last; it never waits for a busy
process while another is idle, and reserves a place to spawn one when the lane is short.
"""

from __future__ import annotations

import threading
import time

from .errors import RenderUnavailable
from .handles import RenderProcess
from .protocol import SpawnOptions


class Lane:
    def __init__(self, name: str, size: int, options: SpawnOptions) -> None:
        self.name = name
        self.size = size
        self.options = options
        self.idle: list[RenderProcess] = []
        self.live: set[RenderProcess] = set()
        self.reserved = 0  # spawns under way
        self.closed = False
        self.cond = threading.Condition()

    def take(self, timeout: float, prefer: str | None = None) -> RenderProcess | None:
        """An idle process, or None when the caller may spawn one (a place is reserved)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.closed:
                    raise RenderUnavailable("the server is stopping")
                if self.idle:
                    return self.idle.pop(self._pick(prefer))
                if len(self.live) + self.reserved < self.size:
                    self.reserved += 1
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.cond.wait(remaining):
                    raise RenderUnavailable(f"no {self.name} render process became free")

    def _pick(self, prefer: str | None) -> int:
        idle = self.idle
        if prefer is not None:
            for i in range(len(idle) - 1, -1, -1):
                if prefer in idle[i].held:
                    return i
            for i in range(len(idle) - 1, -1, -1):
                if not idle[i].held:
                    return i
        return len(idle) - 1  # the one used last: its memory is the warmest

    def reserve(self) -> bool:
        """Reserve a place for a new process if the lane is short of its size."""
        with self.cond:
            if self.closed or len(self.live) + self.reserved >= self.size:
                return False
            self.reserved += 1
            return True

    def admit(self, proc: RenderProcess) -> bool:
        """Count a newly spawned process (its place was reserved); False if closing."""
        with self.cond:
            self.reserved -= 1
            if self.closed:
                self.cond.notify()
                return False
            self.live.add(proc)
            return True

    def unreserve(self) -> None:
        with self.cond:
            self.reserved -= 1
            self.cond.notify()

    def drop_exited(self) -> list[RenderProcess]:
        """Take the idle processes that have ended out of the lane, and return them."""
        with self.cond:
            gone = [p for p in self.idle if p.exited()]
            for proc in gone:
                self.idle.remove(proc)
                self.live.discard(proc)
            return gone

    def give_back(self, proc: RenderProcess) -> None:
        with self.cond:
            if proc in self.live and not self.closed:
                self.idle.append(proc)
                self.cond.notify()
                return
        # A task that ended as the lane closed: nobody else will close its process.
        proc.kill()
        proc.close()

    def drop(self, proc: RenderProcess) -> None:
        with self.cond:
            self.live.discard(proc)
            self.cond.notify()

    def close(self) -> tuple[list[RenderProcess], list[RenderProcess]]:
        """Close the lane; return its idle and its busy processes."""
        with self.cond:
            self.closed = True
            idle = list(self.idle)
            busy = [p for p in self.live if p not in idle]
            self.live.clear()
            self.idle.clear()
            self.cond.notify_all()
        return idle, busy
