"""Test-only server app for live tests: ``tests.ops_app:app``.

The shipped app plus the test figures of ``tests/gates.py`` (held, runaway, crashing renders),
and an ``X-Test-Worker`` response header naming the worker process that answered.
"""

from __future__ import annotations

import os
from pathlib import Path

from quart import Response

from src.app import create_app

from .gates import registry_with_test_figures

app = create_app({"registry": registry_with_test_figures()})


@app.after_request
async def _name_worker(response: Response) -> Response:
    response.headers["X-Test-Worker"] = str(os.getpid())
    return response


def worker_of(render_pid: int) -> int:
    """The Hypercorn worker a render process belongs to (its fork server's parent)."""
    server = _parent(render_pid)
    return _parent(server)


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])
