"""What the renderer tells the operator about renders: one log line per render, failures by
kind, and what needs doing once per figure (an update function that raises, render processes
that run other code), with the counters that go with them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .encode import RenderJob
from .errors import (
    RenderCrashed,
    RenderError,
    RenderFailed,
    RenderProtocolError,
    RenderUnavailable,
    TooComplex,
)
from .flights import Drawn

log = logging.getLogger("figserve.render")


class RenderReports:
    """``count(event, job)`` is the renderer's: it feeds its stats and its observer."""

    def __init__(self, count: Callable[[str, RenderJob], None]) -> None:
        self._count = count
        self._mismatched: set[str] = set()  # figures whose version mismatch was logged
        self._update_failed: set[str] = set()  # figures whose failed update was logged

    def warm(self, job: RenderJob, drawn: Drawn) -> None:
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

    def mismatch(self, job: RenderJob) -> None:
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

    def failure(self, job: RenderJob, error: BaseException) -> None:
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

    def line(self, job: RenderJob, cache: str, t0: float, size: int, warm: str) -> None:
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
