"""Test-only app whose stop never ends: ``tests.support.stuck:app``.

The first thing its stop does is block the worker's event loop for an hour, with its render
processes still running, as a worker wedged in its server's shutdown would. Only killing it
ends it."""

from __future__ import annotations

import time

from figserve.app import create_app

app = create_app({"warm_up": False})


async def _wedged() -> None:
    time.sleep(3600)  # the event loop, and every signal handler of it, waits with it


app.after_serving_funcs.insert(0, _wedged)
