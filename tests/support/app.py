"""Test-only server app for live tests: ``tests.support.app:app``.

The shipped app plus the test figures of ``gates.py`` (held, runaway, crashing renders), and an
``X-Test-Worker`` response header naming the worker process that answered.
"""

from __future__ import annotations

import os

from quart import Response

from figserve.app import create_app
from tests.support.gates import registry_with_test_figures
from tests.support.procs import parent

app = create_app({"registry": registry_with_test_figures()})


@app.after_request
async def _name_worker(response: Response) -> Response:
    response.headers["X-Test-Worker"] = str(os.getpid())
    return response


def worker_of(render_pid: int) -> int:
    """The Hypercorn worker a render process belongs to (its fork server's parent)."""
    return parent(parent(render_pid))
