"""The worker's handles on its fork server and on each render process.

Render processes are forked from one warm fork server per Python process (``forkserver.py``),
shared by every pool of that process the way ``multiprocessing`` shares its forkserver: a fork
takes milliseconds where a fresh interpreter takes a second.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .forkserver import ServerInit, Task
from .protocol import SpawnOptions, recv_control, send_control

if TYPE_CHECKING:
    from ..figures import FigureSpec

log = logging.getLogger("figserve.render")

# The folder that holds the ``figserve`` package, so a fork server finds it from any directory.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
START_TIMEOUT = 60.0  # a fork server imports matplotlib and the figures, then warms up
CONTROL_TIMEOUT = 10.0  # a fork takes milliseconds; a server this slow is stuck
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def import_path() -> list[str]:
    """``sys.path`` with every entry absolute ('' is the current directory): render processes
    import figure modules, the user's own among them, from the same folders as the worker."""
    cwd = os.getcwd()
    return [os.path.abspath(p) if p else cwd for p in sys.path]


class ForkServer:
    """A running fork server; ``spawn`` gives a new render process and its socket."""

    def __init__(self, init: ServerInit, figures: list[FigureSpec] | None = None) -> None:
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {
            **os.environ,
            # One render process per core already: numeric libraries must not add threads.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_ROOT!r}); "
            "from figserve.render.forkserver import main; main(sys.argv)"
        )
        with child_end:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, str(child_end.fileno())],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        self.pid = self._proc.pid
        self._ctrl = parent_end
        self._lock = threading.Lock()
        self._preloaded = set(init.preload)
        self._figures = {(s.name, s.draw) for s in figures or []}
        try:
            send_control(self._ctrl, init)
            reply = self._reply(START_TIMEOUT)
        except BaseException:
            self.close()
            raise
        if reply[0] != "ready":
            self.close()
            raise RuntimeError(f"render fork server did not start: {reply!r}")

    def _reply(self, timeout: float) -> Any:
        self._ctrl.settimeout(timeout)
        message, fds = recv_control(self._ctrl)
        for fd in fds:
            os.close(fd)
        return message

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def preload(self, modules: list[str], figures: list[FigureSpec] = ()) -> None:  # type: ignore[assignment]
        """Import ``modules`` in the server and compute the code versions of ``figures`` there,
        so render processes start with them."""
        missing = [m for m in modules if m not in self._preloaded]
        new = [s for s in figures if (s.name, s.draw) not in self._figures]
        if not missing and not new:
            return
        with self._lock:
            # The worker's import path now: a module of the user's may come from a folder added
            # after this server started.
            send_control(self._ctrl, ("preload", missing, import_path(), _pickled(new)))
            reply = self._reply(START_TIMEOUT)
        if reply[0] != "ok":
            raise RuntimeError(f"render processes cannot import {', '.join(missing)}: {reply[1]}")
        self._preloaded.update(missing)
        self._figures.update((s.name, s.draw) for s in new)

    def spawn(self, options: SpawnOptions) -> RenderProcess:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock, theirs:
                send_control(self._ctrl, ("spawn", options), theirs.fileno())
                reply = self._reply(CONTROL_TIMEOUT)
        except BaseException:
            ours.close()
            raise
        return RenderProcess(reply[1], ours)

    def close(self, timeout: float = 5.0) -> None:
        # Its render processes die with it (PR_SET_PDEATHSIG) or at their socket's end.
        with contextlib.suppress(OSError):
            self._ctrl.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_server_lock = threading.Lock()
_server: ForkServer | None = None


def _pickled(figures: list[FigureSpec]) -> bytes:
    return pickle.dumps(figures, protocol=pickle.HIGHEST_PROTOCOL) if figures else b""


def fork_server(
    preload: list[str], warm_up: Task | None = None, figures: list[FigureSpec] | None = None
) -> ForkServer:
    """This process's fork server, started (or restarted, if it died) on first use."""
    global _server
    figures = list(figures or [])
    with _server_lock:
        if _server is not None and not _server.alive:
            log.error("render fork server %d died; starting a new one", _server.pid)
            _server.close()
            _server = None
        if _server is None:
            started = time.perf_counter()
            warm = pickle.dumps(warm_up) if warm_up is not None else b""
            init = ServerInit(import_path(), list(preload), warm, 3, _pickled(figures))
            _server = ForkServer(init, figures)
            log.info(
                "render fork server %d ready in %.0f ms",
                _server.pid,
                (time.perf_counter() - started) * 1000,
            )
        server = _server
    server.preload(preload, figures)
    return server


@atexit.register
def _close_fork_server() -> None:
    global _server
    with _server_lock:
        server, _server = _server, None
    if server is not None:
        server.close()


class RenderProcess:
    """One render process: its pid, its socket, and what the worker knows about it."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        self.renders = 0
        self.cpu = 0.0  # its CPU time at the end of its last task
        self.held: frozenset[str] = frozenset()  # keys of the figures it keeps warm
        try:
            # A handle that cannot reach another process after this pid is reused.
            self._pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            self._pidfd = None

    def cpu_now(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def exited(self) -> bool:
        """Whether the process has ended (its pidfd is readable then)."""
        if self._pidfd is None:
            return not os.path.exists(f"/proc/{self.pid}")
        readable, _, _ = select.select([self._pidfd], [], [], 0)
        return bool(readable)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, OSError):
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            else:
                os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None
