"""A stopping worker: learning that the server has begun to stop, and ending by a deadline.

**Learning.** A stopping Hypercorn closes its listening sockets and then waits up to
``graceful_timeout`` for the requests in flight; the app hears of the stop (the ASGI lifespan's
shutdown) only after that wait. Requests that never end by themselves (live streams) would hold
the whole grace time. So a worker watches what its master uses to tell it to stop: the shutdown
event Hypercorn passes to every worker process (``hypercorn.run``; set on SIGTERM, SIGINT, a
reload and SIGHUP). That event is not part of Hypercorn's public API: it is found among the
worker process's arguments, and a worker without one (a single process, another server) learns
of the stop at the lifespan's shutdown, as any app does. ``tests/web/test_live_server.py``
checks that a stop still ends streams at once with the installed Hypercorn. A worker of
``python -m figserve serve`` is told by its own master (``began()``).

**Ending.** A stop can wedge: a flood of HTTP/2 streams whose clients never read, tasks that
ignore their cancellation, an event loop busy with queued work. Once a worker knows its stop
has begun (the event above, a SIGTERM of its own, its app beginning to shut down) it arms a
watchdog thread; past the deadline the watchdog kills the worker and every process it started
(fork server, render processes) with SIGKILL. Armed only in server workers (``enable()``),
never in a test's process or a script's.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

POLL_SECONDS = 0.1  # as often as Hypercorn's own worker looks
MARGIN = 4.0  # seconds a worker may take past its deadline's reason before it is killed

# Re-entrant: ``arm`` runs in signal handlers, and a second signal may arrive while the first
# handler holds it (a plain lock would then wedge the worker for good).
_lock = threading.RLock()
_enabled = False
_deadline = math.inf
_timer: threading.Timer | None = None
_began = threading.Event()


def hypercorn_shutdown_event() -> Any | None:
    """The shutdown event of this Hypercorn worker process, or None outside one."""
    process = multiprocessing.current_process()
    arguments = getattr(process, "_kwargs", None)  # what the master started this worker with
    event = arguments.get("shutdown_event") if isinstance(arguments, dict) else None
    return event if callable(getattr(event, "is_set", None)) else None


def began() -> None:
    """This worker's stop has begun (its own master, ``python -m figserve serve``, says so)."""
    _began.set()


async def server_stopping(event: Any | None = None) -> None:
    """Return once this worker's server begins to stop; never outside a server's worker."""
    event = event if event is not None else hypercorn_shutdown_event()
    if event is None and not _enabled:
        await asyncio.Event().wait()  # not a server's worker: nobody will say
    while not (_began.is_set() or (event is not None and event.is_set())):
        await asyncio.sleep(POLL_SECONDS)


def enable() -> None:
    """This process is a server worker: stops are watched from now on."""
    global _enabled
    _enabled = True


def arm(seconds: float, why: str) -> None:
    """Kill this worker and its processes ``seconds`` from now, unless an earlier deadline is
    armed already or the worker has ended by then."""
    global _deadline, _timer
    if not _enabled:
        return
    with _lock:
        deadline = time.monotonic() + seconds
        if deadline >= _deadline:
            return
        if _timer is not None:
            _timer.cancel()
        _deadline = deadline
        _timer = threading.Timer(seconds, _kill, args=(why, seconds))
        _timer.daemon = True
        _timer.start()


def _kill(why: str, seconds: float) -> None:
    print(
        f"figserve worker {os.getpid()}: {why}, and it still runs {seconds:g} s later: "
        "killing it and its render processes",
        file=sys.stderr,
        flush=True,
    )
    me = os.getpid()
    if os.getpgrp() == me:  # a group of its own (python -m figserve serve): all of it
        os.killpg(me, signal.SIGKILL)
    for pid in _descendants(me):  # under Hypercorn's master the group is shared: its tree
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    os.kill(me, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def graceful_timeout(argv: list[str] | None = None) -> float:
    """The ``graceful_timeout`` Hypercorn's own master runs with, as its command line sets it
    (a worker of that master is started with the master's ``sys.argv``, and cannot see its
    configuration otherwise): ``--graceful-timeout``, else the TOML file of ``--config``, else
    Hypercorn's default."""
    from hypercorn.config import Config

    args = list(sys.argv if argv is None else argv)[1:]
    found: float | None = None
    config: str | None = None
    for index, arg in enumerate(args):
        value = args[index + 1] if index + 1 < len(args) else None
        if arg == "--graceful-timeout" and value is not None:
            with contextlib.suppress(ValueError):
                found = float(value)
        elif arg.startswith("--graceful-timeout="):
            with contextlib.suppress(ValueError):
                found = float(arg.partition("=")[2])
        elif arg in ("-c", "--config") and value is not None:
            config = value
        elif arg.startswith("--config="):
            config = arg.partition("=")[2]
    if found is not None:
        return found
    if config is not None and not config.startswith(("file:", "python:")):
        errors = (OSError, tomllib.TOMLDecodeError, TypeError, ValueError)
        with contextlib.suppress(*errors), open(config, "rb") as f:
            return float(tomllib.load(f).get("graceful_timeout", Config.graceful_timeout))
    return float(Config.graceful_timeout)
