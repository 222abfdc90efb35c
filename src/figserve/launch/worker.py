"""One worker of ``python -m figserve serve``: builds the app, serves it with Hypercorn's public
API (``hypercorn.asyncio.serve``) on the listening sockets its master made, and reports to the
master over a pipe: ``ready``, or ``failed <status> <message>``.

It stops gracefully on SIGTERM or SIGINT, or when its master goes away (the lifeline pipe
closes), and then ends by ``graceful_timeout`` plus a margin whatever happens: a watchdog
kills its whole process group (itself, its fork server and render processes) past that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import signal
import sys
import threading
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from .. import startup, stopping

STOP_MARGIN = stopping.MARGIN  # past graceful_timeout a stopping worker kills itself (its master
# would a second later)


def load_app(spec: str) -> Any:
    """``module:attribute`` or ``module:factory()``."""
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    attribute = attribute or "app"
    if attribute.endswith("()"):
        return getattr(module, attribute[:-2])()
    return getattr(module, attribute)


class _Reporter:
    """Status lines to the master: each one write, so lines never interleave."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, *words: str) -> None:
        line = " ".join(words).replace("\n", " ") + "\n"
        with contextlib.suppress(OSError):  # a master that is gone cannot be told
            os.write(self.fd, line.encode())


class _Ready:
    """Wraps the app: says ``ready`` once its lifespan started; a failed start is told too."""

    def __init__(self, app: Any, reporter: _Reporter) -> None:
        self.app = app
        self.reporter = reporter

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def reporting_send(message: dict) -> None:
            if message["type"] == "lifespan.startup.complete":
                self.reporter.send("ready")
            await send(message)

        await self.app(scope, receive, reporting_send)


def _bound(config: Config, fds: dict[str, list[int]]) -> None:
    """Point the configuration at the master's sockets (``fd://``)."""
    config.bind = [f"fd://{fd}" for fd in fds["bind"]]
    config.insecure_bind = [f"fd://{fd}" for fd in fds["insecure"]]
    config.quic_bind = [f"fd://{fd}" for fd in fds["quic"]]
    config.workers = 1  # this process is one worker; the master keeps the count


async def _serve(app: Any, config: Config, lifeline: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def begin_stop() -> None:
        stopping.arm(config.graceful_timeout + STOP_MARGIN, "its stop began")
        stopping.began()  # what waits for the server to stop (live streams) learns it now
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, begin_stop)

    def watch_master() -> None:
        with contextlib.suppress(OSError):
            while os.read(lifeline, 1):
                pass
        # The master is gone (or closed the pipe): nobody else will stop this worker.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(begin_stop)

    threading.Thread(target=watch_master, name="figserve-lifeline", daemon=True).start()
    await serve(app, config, shutdown_trigger=stop.wait)


def _report(reporter: _Reporter, exc: BaseException) -> int:
    text, status = startup.describe(exc)
    reporter.send("failed", str(status), text)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m figserve.launch.worker")
    parser.add_argument("--app", required=True)
    parser.add_argument("--config", required=True, help="the checked settings, as JSON")
    parser.add_argument("--sockets", required=True, help="JSON: bind, insecure, quic fds")
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--lifeline-fd", type=int, required=True)
    args = parser.parse_args(argv)
    reporter = _Reporter(args.status_fd)
    stopping.enable()
    failures: list[BaseException] = []  # the first failure of building or starting the app
    startup.on_failure = failures.append
    try:
        app = load_app(args.app)
    except BaseException as exc:  # any failure to build the app is a failed start
        return _report(reporter, failures[0] if failures else exc)
    config = Config.from_mapping(json.loads(args.config))
    _bound(config, json.loads(args.sockets))
    served = _serve(_Ready(app, reporter), config, args.lifeline_fd)
    try:
        if config.worker_class == "uvloop":
            import uvloop

            uvloop.run(served)
        else:
            asyncio.run(served)
    except BaseException as exc:  # the start failed as serving began (or serving failed)
        return _report(reporter, failures[0] if failures else exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
