"""``python -m figserve check``: everything a start checks, without serving.

It reads ``hypercorn.toml`` (keys and values), figserve's settings, the user's figure modules
(each figure's declaration) and pages (every template compiles), by building the app as a
worker would. It prints one line and exits 0 when all is well; otherwise it prints the one
message of what is wrong and exits non-zero (2 for the configuration), so a supervisor
(``ExecStartPre=`` in ``deploy/figserve.service``) or a script stops before a start that would
fail.
"""

from __future__ import annotations

import os
import sys

from .. import startup
from .hyperconfig import ServerConfig
from .worker import load_app


def check(server: ServerConfig, app: str) -> int:
    if os.getcwd() not in sys.path:  # user modules are found from here, as in a server
        sys.path.insert(0, os.getcwd())
    failures: list[BaseException] = []
    startup.on_failure = failures.append
    try:
        built = load_app(app)
    except BaseException as exc:
        text, status = startup.describe(failures[0] if failures else exc)
        print(f"figserve check: {text}", file=sys.stderr, flush=True)
        return status
    finally:
        startup.on_failure = None
    state = getattr(built, "extensions", {}).get("figserve")
    figures = [spec.name for spec in state.registry] if state is not None else []
    pages = state.settings.pages if state is not None else ""
    hypercorn = server.hypercorn()
    print(
        f"figserve check: ok: {len(figures)} figures ({', '.join(figures)})"
        + (f", pages from {pages}" if pages else "")
        + f"; {server.workers} worker(s) on {', '.join(hypercorn.bind)} ({server.source})",
        flush=True,
    )
    return 0
