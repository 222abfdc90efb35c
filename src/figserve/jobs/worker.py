"""A standalone job worker for scale-out mode, on this machine or any other:

    FIGSERVE_REDIS_URL=redis://redis-host:6379/0 FIGSERVE_JOB_THREADS=2 \\
        python -m figserve.jobs.worker

It renders report items and builds results (``queue.JobWorkers``) in render processes of its
own: ``FIGSERVE_JOB_THREADS`` items at once (one per core it may use is a good choice) plus one
assembly. It reads the same ``FIGSERVE_*`` settings as the instances, and loads the same figures
(the shipped ones and the modules of ``FIGSERVE_FIGURES``), so it draws exactly what the
instances accept; it builds no web app. SIGTERM or Ctrl-C stops it: running items finish within
the render timeout or go back to the queue; a worker killed outright loses nothing either (its
tasks are run again elsewhere once its heartbeat stops).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from ..config import Settings, SettingsError, redact
from ..figures import FIGURES, Registry
from ..figures.loading import FigureModuleError, load_figure_modules

log = logging.getLogger("figserve.jobs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m figserve.jobs.worker", description=__doc__)
    parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        load_figure_modules(settings.figures)
    except (SettingsError, FigureModuleError) as exc:
        print(f"figserve job worker: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print(
            "figserve job worker: FIGSERVE_REDIS_URL is not set: a job worker serves the Redis "
            "that figserve instances share (scale-out mode).",
            file=sys.stderr,
        )
        return 2
    if settings.job_threads < 1:
        print("figserve job worker: FIGSERVE_JOB_THREADS must be 1 or more.", file=sys.stderr)
        return 2
    _configure_logging(settings.log_level)
    from ..scaleout import RedisUnavailable

    try:
        asyncio.run(serve(settings, FIGURES))
    except RedisUnavailable as exc:
        print(f"figserve job worker: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(settings: Settings, registry: Registry) -> None:
    """Run job workers until SIGTERM or SIGINT."""
    from ..render.serving import serving_renderer
    from .serving import serving_job_workers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with (
        serving_renderer(settings, registry, interactive=False) as renderer,
        serving_job_workers(settings, registry, renderer),
    ):
        log.info(
            "job worker ready: %d items at once, Redis %s",
            settings.job_threads,
            redact(settings.redis_url),
        )
        await stop.wait()
        log.info("job worker stopping: running items finish or go back to the queue")
    log.info("job worker stopped")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


if __name__ == "__main__":
    sys.exit(main())
