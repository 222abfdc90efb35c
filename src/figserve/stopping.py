"""Learning that the server has begun to stop, while requests still run.

A stopping Hypercorn closes its listening sockets and then waits up to ``graceful_timeout`` for
the requests in flight; the app hears of the stop (the ASGI lifespan's shutdown) only after
that wait. Requests that never end by themselves (live streams) would hold the whole grace time.
So a worker watches what its master uses to tell it to stop: the shutdown event Hypercorn
passes to every worker process (``hypercorn.run``; set on SIGTERM, SIGINT, a reload and
SIGHUP). That event is not part of Hypercorn's public API: it is found among the worker
process's arguments, and a worker without one (a single process, another server) learns of the
stop at the lifespan's shutdown, as any app does. ``tests/web/test_live_server.py`` checks that
a stop still ends streams at once with the installed Hypercorn.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

POLL_SECONDS = 0.1  # as often as Hypercorn's own worker looks


def hypercorn_shutdown_event() -> Any | None:
    """The shutdown event of this Hypercorn worker process, or None outside one."""
    process = multiprocessing.current_process()
    arguments = getattr(process, "_kwargs", None)  # what the master started this worker with
    event = arguments.get("shutdown_event") if isinstance(arguments, dict) else None
    return event if callable(getattr(event, "is_set", None)) else None


async def server_stopping(event: Any | None = None) -> None:
    """Return once this worker's server begins to stop; never outside a Hypercorn worker."""
    event = event if event is not None else hypercorn_shutdown_event()
    if event is None:
        await asyncio.Event().wait()
    while not event.is_set():
        await asyncio.sleep(POLL_SECONDS)
