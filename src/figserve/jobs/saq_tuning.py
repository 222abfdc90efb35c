"""SAQ's settings, from figserve's: SAQ's own defaults would abort the task of a worker that
died a minute later instead of running it again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from saq.queue.redis import RedisQueue

from ..config import Settings
from .assemble import ASSEMBLE_SECONDS_PER_ITEM

JOBS_QUEUE = "fs-jobs"  # plan and assemble
ITEMS_QUEUE = "fs-items"  # one task per item
ACQUIRE_SECONDS = 30.0  # a task may wait this long for a render process of its lane


@dataclass(frozen=True)
class Tuning:
    heartbeat: int  # a task silent this long is taken back by a sweep
    retries: int  # attempts in all
    sweep: int  # seconds between a worker's sweeps (and watch rounds)
    ttl: int  # seconds SAQ keeps an ended task's record
    item_timeout: int  # hard cap of one item task
    grace: int  # seconds a stopping worker lets running tasks finish before re-queueing them

    @classmethod
    def of(cls, settings: Settings) -> Tuning:
        render = settings.render_timeout
        return cls(
            heartbeat=max(1, round(settings.job_stale_after)),
            retries=settings.job_max_attempts,
            sweep=max(1, round(settings.job_poll_interval * 5)),
            ttl=max(60, round(settings.job_result_ttl)),
            item_timeout=round(render + ACQUIRE_SECONDS + 30),
            grace=max(1, round(render + 1)),
        )

    def task(self, timeout: float) -> dict[str, Any]:
        """SAQ job options of a task that may take up to ``timeout`` seconds."""
        return {
            "timeout": max(1, round(timeout)),
            "heartbeat": self.heartbeat,
            "retries": self.retries,
            "retry_delay": 0.5,
            "retry_backoff": 5.0,
            "ttl": self.ttl,
        }

    @staticmethod
    def assemble_timeout(settings: Settings, items: int) -> float:
        return 60 + settings.render_timeout + ASSEMBLE_SECONDS_PER_ITEM * items


async def enqueue_plan(queue: RedisQueue, job_id: str, tuning: Tuning) -> None:
    # A key per job: queued again while incomplete, SAQ keeps the one it has.
    await queue.enqueue("plan", key=f"plan:{job_id}", job_id=job_id, **tuning.task(60))
