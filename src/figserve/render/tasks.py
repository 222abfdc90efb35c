"""Tasks that are not cached images: report jobs (the background lane) and small probes such as
figures' data-version functions (the probe lane), each lane with threads of its own.

Both get the render processes' supervision (a deadline that really stops them, memory cap,
checks after each task) without the image cache or the renderer's admission limit: the job
runner bounds its own work, and probes are bounded here (``PROBES_PER_PROCESS`` waiting or
running per probe process, more are refused with ``Overloaded`` at once).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from .errors import Overloaded, RenderUnavailable
from .forkserver import Task
from .pool import LaneName, RenderPool

PROBES_PER_PROCESS = 16


class TaskLanes:
    """The background and probe lanes of one renderer."""

    def __init__(self, pool: RenderPool, png_level: int) -> None:
        self.pool = pool
        self.png_level = png_level
        settings = pool.settings
        self._executors: dict[LaneName, concurrent.futures.ThreadPoolExecutor] = {
            "background": concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, settings.background), thread_name_prefix="figserve-job"
            ),
            "probe": concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, settings.probes), thread_name_prefix="figserve-probe"
            ),
        }
        self.probes_pending = 0
        self.closing = False

    async def run(self, lane: LaneName, task: Task, deadline: float | None) -> Any:
        if self.closing:
            raise RenderUnavailable("the server is stopping")
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executors[lane],
                lambda: self.pool.run(task, self.png_level, lane=lane, deadline=deadline),
            )
        except RuntimeError as exc:  # the thread pool is shut down
            raise RenderUnavailable("the server is stopping") from exc
        return outcome.value

    async def probe(self, task: Task, deadline: float) -> Any:
        processes = self.pool.settings.probes
        if processes == 0:
            raise RenderUnavailable("this server runs no probe processes")
        if self.probes_pending >= PROBES_PER_PROCESS * processes:
            raise Overloaded(f"{self.probes_pending} probes are already waiting or running")
        self.probes_pending += 1
        try:
            return await self.run("probe", task, deadline)
        finally:
            self.probes_pending -= 1

    @property
    def executors(self) -> list[concurrent.futures.ThreadPoolExecutor]:
        return list(self._executors.values())
