"""Test-only server app for live tests: ``tests.ops_app:app``.

The shipped app plus a figure ``gated`` whose render blocks until the test opens a gate, and an
``X-Test-Worker`` response header naming the worker process that answered. Gates are files in the
directory ``OPS_TEST_GATE_DIR``: a render writes ``started-<pid>-<id>`` when a thread begins it,
then waits for ``open`` (every worker) or ``open-<pid>`` (that worker only).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from matplotlib.figure import Figure
from pydantic import Field
from quart import Response

from src.app import create_app
from src.figures import FIGURES, FigureParams

GATE_DIR = Path(os.environ.get("OPS_TEST_GATE_DIR", "."))
GATE_TIMEOUT = 60.0  # a forgotten gate fails the render instead of hanging the server


class GatedParams(FigureParams):
    tag: str = Field("", max_length=40, pattern=r"^[a-z0-9-]*$", description="Free label.")


def started_markers(gate_dir: Path) -> list[Path]:
    return sorted(gate_dir.glob("started-*"))


def marker_pid(marker: Path) -> int:
    return int(marker.name.split("-")[1])


registry = FIGURES.copy()


@registry.figure(
    "gated",
    title="Gated",
    description="Blocks until the test opens its gate (tests only).",
    params=GatedParams,
    width=100,
    height=75,
)
def gated(fig: Figure, p: GatedParams) -> None:
    pid = os.getpid()
    (GATE_DIR / f"started-{pid}-{uuid.uuid4().hex[:8]}").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not ((GATE_DIR / "open").exists() or (GATE_DIR / f"open-{pid}").exists()):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    fig.add_subplot().plot([0, 1], [0, 1])


app = create_app({"registry": registry})


@app.after_request
async def _name_worker(response: Response) -> Response:
    response.headers["X-Test-Worker"] = str(os.getpid())
    return response
