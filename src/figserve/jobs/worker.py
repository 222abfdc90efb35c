"""A standalone job worker for scale-out mode, on this machine or any other:

    FIGSERVE_REDIS_URL=redis://redis-host:6379/0 FIGSERVE_JOB_THREADS=2 \\
        python -m figserve.jobs.worker

It renders report items and assembles results (``queue.JobWorkers``) in render processes of its
own: ``FIGSERVE_JOB_THREADS`` items at once (one per core it may use is a good choice) plus one
assembly. It takes its settings from the same ``FIGSERVE_*`` variables as the instances, and its
figures from the same settings (``FIGSERVE_FIGURES``), so it draws exactly what the instances
accept. SIGTERM or Ctrl-C stops it: running items finish within the render timeout or
go back to the queue; a worker killed outright loses nothing either (its tasks are run again
elsewhere once its heartbeat stops).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys

from ..config import Settings, redact
from ..figures import Registry

log = logging.getLogger("figserve.jobs")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m figserve.jobs.worker", description=__doc__)
    parser.add_argument(
        "--app",
        default="",
        help="module:attribute of a figserve app whose figures to draw (default: an app built "
        "from the FIGSERVE_* settings)",
    )
    args = parser.parse_args(argv)
    if args.app:
        module, _, attribute = args.app.partition(":")
        app = getattr(importlib.import_module(module), attribute or "app")
    else:
        from ..app import create_app

        app = create_app()
    state = app.extensions["figserve"]
    settings: Settings = state.settings
    if not settings.redis_url:
        print(
            "FIGSERVE_REDIS_URL is not set: a job worker serves the Redis that figserve "
            "instances share (scale-out mode).",
            file=sys.stderr,
        )
        return 2
    if settings.job_threads < 1:
        print("FIGSERVE_JOB_THREADS must be 1 or more for a job worker.", file=sys.stderr)
        return 2
    from ..scaleout import RedisUnavailable

    try:
        asyncio.run(_serve(settings, state.registry))
    except RedisUnavailable as exc:
        print(f"figserve job worker: {exc}", file=sys.stderr)
        return 1
    return 0


async def _serve(settings: Settings, registry: Registry) -> None:
    from ..render.serving import serving_renderer
    from .queue import JobWorkers

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with serving_renderer(settings, registry, interactive=False) as renderer:
        workers = JobWorkers(settings, registry, renderer)
        await workers.start()
        log.info(
            "job worker ready: %d items at once, Redis %s",
            settings.job_threads,
            redact(settings.redis_url),
        )
        try:
            await stop.wait()
            log.info("job worker stopping: running items finish or go back to the queue")
        finally:
            await workers.close()
    log.info("job worker stopped")


if __name__ == "__main__":
    sys.exit(main())
