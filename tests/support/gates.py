"""Test-only figures that hold, break, crash or run away inside a render process.

They are module-level functions, so they reach render processes by reference like any figure.
A gated render writes ``started-<pid>-<tag>-<id>`` into the folder given as its ``gate``
parameter, then waits until a file ``open`` (every render) or ``open-<tag>`` (renders of that
tag) exists there, so a test controls exactly when renders finish, across processes.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
import uuid
from pathlib import Path

from matplotlib.figure import Figure
from pydantic import Field

from figserve.figures import FIGURES, FigureParams, Registry

GATE_TIMEOUT = 60.0  # a forgotten gate fails the render instead of hanging the test run


class GateParams(FigureParams):
    gate: str = Field("", max_length=300, description="Folder of the gate (tests only).")
    tag: str = Field("", max_length=40, pattern=r"^[a-z0-9]*$", description="Free label.")


def gated(fig: Figure, p: GateParams) -> None:
    gate = Path(p.gate)
    (gate / f"started-{os.getpid()}-{p.tag}-{uuid.uuid4().hex[:8]}").touch()
    deadline = time.monotonic() + GATE_TIMEOUT
    while not ((gate / "open").exists() or (gate / f"open-{p.tag}").exists()):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.005)
    fig.add_subplot().plot([0, 1], [0, 1])


def spin(fig: Figure, p: GateParams) -> None:
    """Draws forever on the CPU: what a runaway figure does."""
    if p.gate:
        (Path(p.gate) / f"started-{os.getpid()}-{p.tag}-spin").touch()
    deadline = time.monotonic() + 300
    x = 0
    while time.monotonic() < deadline:
        x += 1


def stall(fig: Figure, p: GateParams) -> None:
    """Waits without using the CPU (like a render stuck behind a busy machine)."""
    if p.gate:
        (Path(p.gate) / f"started-{os.getpid()}-{p.tag}-stall").touch()
    time.sleep(300)


def crash(fig: Figure, p: GateParams) -> None:
    """Dies as a segfault or the OOM killer would end it."""
    os.kill(os.getpid(), signal.SIGKILL)


def segfault(fig: Figure, p: GateParams) -> None:
    ctypes.string_at(0)


def hog(fig: Figure, p: GateParams) -> None:
    """Asks for far more memory than a render may have."""
    blocks = [bytearray(256 * 2**20) for _ in range(64)]
    fig.add_subplot().set_title(str(len(blocks)))


def broken(fig: Figure, p: GateParams) -> None:
    raise RuntimeError("secret internals at /srv/figserve/draw.py")


def whoami(fig: Figure, p: GateParams) -> None:
    """Records which process drew it, then draws something small."""
    if p.gate:
        (Path(p.gate) / f"drawn-{os.getpid()}-{p.tag}-{uuid.uuid4().hex[:8]}").touch()
    fig.add_subplot().plot([0, 1, 2], [1, 0, 1])


TEST_FIGURES = {
    "gated": gated,
    "spin": spin,
    "stall": stall,
    "crash": crash,
    "segfault": segfault,
    "hog": hog,
    "broken": broken,
    "whoami": whoami,
}


def registry_with_test_figures() -> Registry:
    """The shipped figures plus the test figures above and the live ones of ``livedata``."""
    from tests.support.livedata import add_live_figures

    registry = FIGURES.copy()
    for name, draw in TEST_FIGURES.items():
        registry.figure(name, title=name, description=f"{name} (tests only).", params=GateParams)(
            draw
        )
    return add_live_figures(registry)


class Gate:
    """A folder where gated renders announce themselves and wait to be let through."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def query(self, tag: str = "") -> str:
        return f"gate={self.folder}&tag={tag}"

    def params(self, tag: str = "") -> dict[str, str]:
        return {"gate": str(self.folder), "tag": tag}

    def started(self, kind: str = "started") -> list[str]:
        """Tags of the renders that began, in no particular order."""
        return [p.name.split("-")[2] for p in self.folder.glob(f"{kind}-*")]

    def pids(self, kind: str = "started") -> set[int]:
        return {int(p.name.split("-")[1]) for p in self.folder.glob(f"{kind}-*")}

    def open(self) -> None:
        (self.folder / "open").touch()

    def let_through(self, tag: str) -> None:
        (self.folder / f"open-{tag}").touch()
