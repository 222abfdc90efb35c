"""How a job moves, whichever store keeps it and whoever runs its items.

The engine renders one item and keeps it, builds a result from the kept items and ends the job
done, or ends it failed with a reason its owner can act on. Who calls it, and when, is a lane's
business: in embedded mode a worker's runner (``local.py``) claims a whole job and runs its items
one after another; in scale-out mode SAQ workers (``queue.py``) run one task per item and one
assembly. Both go through the same steps here, over the same store protocol (``store.py``).

Every step tolerates the job having ended meanwhile (a cancel, a delete, another worker's
failure): it then stops quietly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from ..config import Settings
from ..figures import Registry
from ..render import (
    RenderCrashed,
    Renderer,
    RenderFailed,
    RenderTimeout,
    TooComplex,
)
from .assemble import ASSEMBLE_SECONDS_PER_ITEM, build_task, render_job
from .model import JobFailed, JobRecord, JobState, ResultsFull, StoreFull
from .store import ENDED, TOO_LARGE, JobStore

log = logging.getLogger("figserve.jobs")
LOGGED = "could not be rendered; the error has been logged"
BUILD_LOGGED = "could not be built; the error has been logged"


class RetryItem(Exception):
    """A render process died or ran out of time: worth another attempt."""


class JobEngine:
    """The steps of a job's work; one per process that works on jobs."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        registry: Registry,
        renderer: Renderer,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.renderer = renderer
        self.clock = clock
        self.busy: set[str] = set()  # jobs this process works on now
        self.changed: Callable[[], None] = lambda: None  # told after each step

    @contextlib.contextmanager
    def working(self, job_id: str) -> Iterator[None]:
        self.busy.add(job_id)
        try:
            yield
        finally:
            self.busy.discard(job_id)
            self.changed()

    async def render_item(
        self, record: JobRecord, index: int, item: dict[str, Any], *, last_attempt: bool
    ) -> int:
        """Render item ``index`` of the job in the background lane and keep it: the number of
        items kept, or ``ENDED`` when the job ended (here, for a reason of its own, or
        elsewhere). Raises ``RetryItem`` when another attempt may succeed (unless this is the
        last), ``RenderUnavailable`` when this worker cannot render now."""
        number = index + 1
        try:
            job = render_job(self.registry, item, self.settings.max_pixels)
            data = await self.renderer.run_background(job)
        except JobFailed as exc:
            return await self.fail(record.id, str(exc))
        except TooComplex as exc:
            return await self.fail(record.id, f"item {number}: {exc}")
        except RenderFailed as exc:
            log.error("job %s item %d failed: %s\n%s", record.id, number, exc, exc.remote_traceback)
            return await self.fail(record.id, f"item {number} {LOGGED}")
        except (RenderCrashed, RenderTimeout) as exc:
            if last_attempt:
                return await self.fail(record.id, f"item {number}: {exc}")
            log.warning("job %s item %d: %s; trying again", record.id, number, exc)
            raise RetryItem(str(exc)) from None
        limit = self.settings.job_max_output_bytes
        try:
            count = await self.store.put_item(record.id, index, data, limit)
        except (StoreFull, JobFailed) as exc:
            return await self.fail(record.id, str(exc))
        if count == TOO_LARGE:
            return await self.fail(
                record.id,
                f"the result passed the limit of {limit:,} bytes after {number} items; use "
                "fewer or smaller items",
            )
        self.changed()
        return count

    async def assemble(self, record: JobRecord, *, last_attempt: bool = True) -> bool:
        """Build the result from the kept items in a render process and end the job done;
        False if it ended otherwise. Raises ``RetryItem`` as ``render_item`` does."""
        try:
            items = await self.store.items(record.id)
            async with self.store.assembly(record) as where:
                task = build_task(
                    self.registry,
                    items,
                    where.parts,
                    where.out,
                    output=record.output,
                    paper=record.paper,
                    created=record.created,
                )
                deadline = self.settings.render_timeout + ASSEMBLE_SECONDS_PER_ITEM * record.total
                size = await self.renderer.run_background(task, deadline)
                self._check_size(size)
                ttl = self.settings.job_result_ttl
                quota = self.settings.job_results_quota_bytes
                handle = await self.store.put_result(record, where.out, quota, ttl)
        except JobFailed as exc:
            return bool(await self.fail(record.id, str(exc)))
        except ResultsFull:
            message = "there was no room for the result; try again when older results expire"
            return bool(await self.fail(record.id, message))
        except StoreFull as exc:
            return bool(await self.fail(record.id, str(exc)))
        except RenderFailed as exc:
            log.error("job %s: the result failed: %s\n%s", record.id, exc, exc.remote_traceback)
            return bool(await self.fail(record.id, f"the result {BUILD_LOGGED}"))
        except (RenderCrashed, RenderTimeout, TooComplex) as exc:
            if last_attempt or isinstance(exc, TooComplex):
                return bool(await self.fail(record.id, f"the result could not be built: {exc}"))
            raise RetryItem(str(exc)) from None
        except OSError as exc:
            # Its files went away: with the job (a cancel, a delete), or with their folder.
            if await self._still_active(record.id):
                await self.fail(record.id, f"the result could not be kept ({exc.strerror})")
            return False
        return await self._complete(record, handle, size)

    async def _still_active(self, job_id: str) -> bool:
        current = await self.store.get(job_id)
        return current is not None and current.active

    def _check_size(self, size: int) -> None:
        limit = self.settings.job_max_output_bytes
        if size > limit:
            raise JobFailed(
                f"the result is {size:,} bytes, over the limit of {limit:,}; use fewer or "
                "smaller items"
            )

    async def _complete(self, record: JobRecord, handle: str, size: int) -> bool:
        now = self.clock()
        if await self.store.complete(record, handle, size, now, self.settings.job_result_ttl):
            log.info("job %s done: %d items, %d bytes", record.id, record.total, size)
            self.changed()
            return True
        if await self._still_active(record.id):  # the kept result went away meanwhile
            await self.fail(record.id, "the result was removed before it could be kept")
        return False

    async def fail(self, job_id: str, error: str) -> int:
        """End the job failed with ``error`` (if it is still active); returns ``ENDED``."""
        ttl = self.settings.job_result_ttl
        if await self.store.end(job_id, JobState.FAILED, self.clock(), ttl, error):
            log.warning("job %s failed: %s", job_id, error)
        self.changed()
        return ENDED
